"""HR writes mentor and mentee profiles on ``/ui/mentorship/profiles``, without a browser.

The form goes to the service of ``PUT /mentorship/profile/{side}`` (so the API reads back what
the page saved, and refuses what the page refuses, with the same words); only HR may open or
post it; a cookie session needs the CSRF token; a refusal shows each message next to its field
and keeps everything typed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from domain.roles import Role
from duly.demo import load_demo_people
from store.db import Database
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal
from tests.pages.conftest import field_error, input_value, page_client

MENTOR, MENTEE = "p-1010", "p-1020"
PAGE = "/ui/mentorship/profiles"

GOOD_MENTOR = {
    "years_experience": "12",
    "specializations": "Hydraulic Elevators, escalators",
    "equipment_expertise": "otis gen2",
    "accepting_mentees": "on",
    "max_mentees": "3",
    "communication_preferences": ["video", "in_person"],
    "availability.hours_per_month": "6",
    "availability.preferred_times": ["weekday_evenings"],
    "city": "Boston",
    "region": "MA",
}


@pytest.fixture
def tokens(sqlite_db: Database) -> dict[str, dict[str, str]]:
    with sqlite_db.session() as session:
        assert load_demo_people(session).errors == []
    return {
        "anonymous": {},
        "hr": bearer(sqlite_db, Role.HR_ADMIN),
        "auditor": bearer(sqlite_db, Role.AUDITOR),
        "manager": bearer(sqlite_db, Role.MANAGER, MENTOR),
        "learner": bearer(sqlite_db, Role.LEARNER, MENTEE),
    }


@pytest.fixture
def client(sqlite_db: Database) -> Iterator[TestClient]:
    with page_client(sqlite_db, FakeTemporal(), "https://testserver") as test_client:
        yield test_client


def _save(client: TestClient, side: str, headers: dict[str, str], **fields: Any) -> Any:
    return client.post(
        f"{PAGE}/{side}", data={"person": MENTOR, **fields}, headers=headers, follow_redirects=False
    )


def test_only_hr_opens_and_posts_the_profile_form(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    for role, expected in (
        ("anonymous", 401),
        ("manager", 403),
        ("learner", 403),
        ("auditor", 403),
    ):
        assert client.get(PAGE, headers=tokens[role]).status_code == expected, role
        answer = _save(client, "mentor", tokens[role], **GOOD_MENTOR)
        assert answer.status_code == expected, role
    assert (
        client.get(f"/mentorship/profile/mentor?person={MENTOR}", headers=tokens["hr"]).json()[
            "profile"
        ]
        is None
    )
    hr_page = client.get("/ui/mentorship", headers=tokens["hr"]).text
    assert f'href="{PAGE}"' in hr_page
    assert f'href="{PAGE}"' not in client.get("/ui/mentorship", headers=tokens["manager"]).text


def test_hr_creates_then_edits_a_mentor_profile(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    hr = tokens["hr"]
    fresh = client.get(PAGE, params={"person": MENTOR, "side": "mentor"}, headers=hr)
    assert fresh.status_code == 200
    assert "has no mentor profile yet" in fresh.text
    saved = _save(client, "mentor", hr, **GOOD_MENTOR)
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{PAGE}?side=mentor&person={MENTOR}&done=saved"
    # The API reads back what the page saved (the same service and store).
    profile = client.get(f"/mentorship/profile/mentor?person={MENTOR}", headers=hr).json()[
        "profile"
    ]
    assert profile["specializations"] == ["hydraulic elevators", "escalators"]
    assert (profile["max_mentees"], profile["availability"]["hours_per_month"]) == (3, 6)
    assert profile["communication_preferences"] == ["video", "in_person"]
    assert (profile["city"], profile["willing_remote"]) == ("Boston", False)
    page = client.get(saved.headers["location"], headers=hr).text
    assert "The profile is saved" in page
    assert input_value(page, "pf-specializations") == "hydraulic elevators, escalators"
    assert re.search(r'id="pf-communication-preferences-video"[^>]*checked', page)
    assert not re.search(r'id="pf-willing-remote"[^>]*checked', page)
    # Edit: not accepting any more, remote now.
    edited = _save(
        client, "mentor", hr, **{**GOOD_MENTOR, "accepting_mentees": "", "willing_remote": "on"}
    )
    assert edited.status_code == 303
    again = client.get(f"/mentorship/profile/mentor?person={MENTOR}", headers=hr).json()
    assert (again["profile"]["accepting_mentees"], again["profile"]["willing_remote"]) == (
        False,
        True,
    )


def test_a_refused_profile_says_why_next_to_each_field_and_keeps_the_input(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    hr = tokens["hr"]
    bad = {
        **GOOD_MENTOR,
        "years_experience": "lots",
        "availability.hours_per_month": "0",
        "communication_preferences": [],
    }
    answer = _save(client, "mentor", hr, **bad)
    assert answer.status_code == 422
    page = answer.text
    assert "valid integer" in field_error(page, "pf-years-experience")
    hours = field_error(page, "pf-availability-hours-per-month")
    assert "greater than or equal to 1" in hours and "hours a month from 1 to 200" in hours
    assert "tick at least one way to meet" in field_error(
        page, "pf-communication-preferences", invalid=False
    )
    assert 'role="alert"' in page
    # Everything typed is still there.
    assert input_value(page, "pf-years-experience") == "lots"
    assert input_value(page, "pf-specializations") == GOOD_MENTOR["specializations"]
    assert input_value(page, "pf-city") == "Boston"
    assert re.search(r'id="pf-availability-preferred-times-weekday_evenings"[^>]*checked', page)
    # Nothing was saved; the API refuses the same hours with the same words.
    hr_api = client.get(f"/mentorship/profile/mentor?person={MENTOR}", headers=hr).json()
    assert hr_api["profile"] is None
    api = client.put(
        "/mentorship/profile/mentor",
        json={
            "person": MENTOR,
            "years_experience": 3,
            "communication_preferences": ["video"],
            "availability": {"hours_per_month": 0},
        },
        headers=hr,
    )
    assert api.status_code == 422 and "greater than or equal to 1" in api.text
    # A mentee profile needs a level.
    mentee = client.post(
        f"{PAGE}/mentee",
        data={
            "person": MENTEE,
            "communication_preferences": ["video"],
            "availability.hours_per_month": "4",
            "career_goal": "Lead a crew",
        },
        headers=hr,
        follow_redirects=False,
    )
    assert mentee.status_code == 422
    assert "choose one of the levels" in field_error(mentee.text, "pf-level")
    assert input_value(mentee.text, "pf-career-goal") == "Lead a crew"


def test_unknown_people_and_sides_and_a_forged_form(
    client: TestClient, tokens: dict[str, dict[str, str]]
) -> None:
    hr = tokens["hr"]
    nobody = client.get(PAGE, params={"person": "p-0000", "side": "mentor"}, headers=hr)
    assert nobody.status_code == 404
    assert "not in the directory" in field_error(nobody.text, "pf-lookup")
    assert input_value(nobody.text, "pf-lookup") == "p-0000"
    assert _save(client, "other", hr, **GOOD_MENTOR).status_code == 404
    assert client.get(PAGE, params={"side": "other"}, headers=hr).status_code == 404
    # A cookie session: the form needs its CSRF token.
    sign_in = client.get("/ui/sign-in").text
    anon = re.search(r'name="csrf" value="([^"]+)"', sign_in)
    assert anon
    token = hr["Authorization"].removeprefix("Bearer ")
    signed = client.post(
        "/ui/sign-in/token", data={"token": token, "csrf": anon.group(1)}, follow_redirects=False
    )
    assert signed.status_code == 303
    form = client.get(PAGE, params={"person": MENTOR, "side": "mentor"}).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    assert _save(client, "mentor", {}, **GOOD_MENTOR).status_code == 403
    assert _save(client, "mentor", {}, **GOOD_MENTOR, csrf="x" * 22).status_code == 403
    assert (
        _save(client, "mentor", {}, **GOOD_MENTOR, csrf=html.unescape(csrf.group(1))).status_code
        == 303
    )
