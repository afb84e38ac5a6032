"""Mentorship in Chromium: the mentee finds a mentor (each factor explained) and asks, the
mentor accepts on their page, both then see the mentorship active, and the mentor downloads
their mentees as CSV; HR sees every relationship. Accessibility checked (axe-core) on each
side's page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from domain.contracts.mentorship import MentorshipState, MentorshipStatus, MentorshipType
from store import mentorship as store
from store.models import Mentorship
from tests.pages.conftest import LEARNER, MANAGER, LiveSite, PageHandle, shot, sign_in_with_token
from tests.pages.test_pages_browser import check_a11y

#: The mentee (the learner) and two mentors: the manager in the mentee's city, and a peer far
#: away who ranks second.
FAR_MENTOR = "p-1023"


def _mentor(years: int, city: str, region: str) -> dict[str, Any]:
    return {
        "years_experience": years,
        "specializations": ["Hydraulic Elevators"],
        "max_mentees": 2,
        "communication_preferences": ["video", "in_person"],
        "availability": {"hours_per_month": 6, "preferred_times": ["weekday_evenings"]},
        "city": city,
        "region": region,
        "willing_remote": True,
    }


MENTEE = {
    "level": "apprentice",
    "years_experience": 1,
    "specialization_interests": ["hydraulic elevators"],
    "communication_preferences": ["in_person"],
    "availability": {"hours_per_month": 4, "preferred_times": ["weekday_evenings"]},
    "city": "Boston",
    "region": "MA",
    "open_to_remote": True,
}


@pytest.fixture
def workflow_accepts(site: LiveSite, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in workflow answers ``accept`` as the real one does: it claims the mentor's
    slot and writes the read model (the activities' work), then returns its state."""
    original = PageHandle.execute_update

    async def execute_update(self: PageHandle, update: Any, arg: Any = None, **kw: Any) -> Any:
        if getattr(update, "__name__", "") != "accept":
            return await original(self, update, arg, **kw)
        now = datetime.now(UTC)
        with site.db.session() as session:
            row = session.scalar(select(Mentorship).where(Mentorship.workflow_id == self.id))
            assert row is not None and row.status == "pending"
            assert (
                store.claim_slot(session, workflow_id=self.id, mentor=row.mentor.external_id)
                is None
            )
            row.status, row.started_at, row.as_of = "active", now, now
            return MentorshipState(
                workflow_id=self.id,
                mentee=row.mentee.external_id,
                mentor=row.mentor.external_id,
                status=MentorshipStatus.ACTIVE,
                type=MentorshipType(row.type),
                goals=list(row.goals),
                duration_months=row.duration_months,
                requested_at=row.requested_at,
                expires_at=now,
                started_at=now,
            )

    monkeypatch.setattr(PageHandle, "execute_update", execute_update)


def test_find_request_accept_then_both_see_it_active(
    site: LiveSite, browser: Any, workflow_accepts: None
) -> None:
    hr = site.bearer("hr")
    for person, profile in (
        (MANAGER, _mentor(6, "Boston", "MA")),
        (FAR_MENTOR, _mentor(3, "Chicago", "IL")),
    ):
        answer = httpx.put(
            f"{site.url}/mentorship/profile/mentor", json={"person": person, **profile}, headers=hr
        )
        assert answer.status_code == 200, answer.text
    answer = httpx.put(
        f"{site.url}/mentorship/profile/mentee", json={"person": LEARNER, **MENTEE}, headers=hr
    )
    assert answer.status_code == 200, answer.text
    api_matches = httpx.get(f"{site.url}/mentorship/find-mentor", headers=site.bearer("learner"))
    ranked = api_matches.json()["matches"]
    assert [m["person"] for m in ranked][:2] == [MANAGER, FAR_MENTOR]

    # The mentee: the nav leads here; the matches in the API's order, each factor explained.
    mentee_ctx = browser.new_context(base_url=site.url)
    page = mentee_ctx.new_page()
    sign_in_with_token(page, site.tokens["learner"])
    page.goto("/ui/me")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mentorship").click()
    expect(page.get_by_role("heading", name="Find a mentor")).to_be_visible()
    shown = page.locator("ol.matches > li").evaluate_all("els => els.map(e => e.dataset.mentor)")
    assert shown[:2] == [MANAGER, FAR_MENTOR]
    first = page.locator(f'ol.matches > li[data-mentor="{MANAGER}"]')
    for factor in ranked[0]["factors"]:
        expect(first.get_by_text(factor["explanation"], exact=True)).to_be_visible()
    check_a11y(page)
    shot(page, "mentorship-mentee")
    first.get_by_label("Your goal (optional)").fill("Pass the hydraulic exam")
    first.get_by_role("button", name="Request").click()
    expect(page.get_by_role("status")).to_have_text(
        "Your request was sent; the mentor is notified."
    )
    mine = page.locator(f'#as-mentee ~ table tr[data-mentor="{MANAGER}"]')
    expect(mine.get_by_text("pending", exact=True)).to_be_visible()
    # An open request: no second "Request" button for the same mentor.
    expect(page.locator(f'ol.matches > li[data-mentor="{MANAGER}"] form')).to_have_count(0)

    # The mentor: the request waits; accept it; capacity counts it.
    mentor_ctx = browser.new_context(base_url=site.url)
    mentor_page = mentor_ctx.new_page()
    sign_in_with_token(mentor_page, site.tokens["manager"])
    mentor_page.goto("/ui/mentorship")
    expect(mentor_page.locator("#capacity")).to_contain_text("0 of 2")
    request_row = mentor_page.locator(f'tr[data-mentee="{LEARNER}"]').first
    expect(request_row).to_contain_text("Pass the hydraulic exam")
    check_a11y(mentor_page)
    request_row.get_by_role("button", name="Accept").click()
    expect(mentor_page.get_by_role("status")).to_have_text("Accepted: the mentorship is active.")
    expect(mentor_page.locator("#capacity")).to_contain_text("1 of 2")
    active = mentor_page.locator(f'#mentees ~ table tr[data-mentee="{LEARNER}"]')
    expect(active).to_be_visible()
    expect(active.get_by_text("Log a session")).to_be_visible()
    check_a11y(mentor_page)
    shot(mentor_page, "mentorship-mentor")
    # The table downloads as CSV: the page's row, the same relationship.
    with mentor_page.expect_download() as info:
        mentor_page.get_by_role("link", name="Download CSV of my active mentees").click()
    lines = open(info.value.path(), encoding="utf-8").read().splitlines()  # noqa: SIM115
    assert lines[0].startswith("relationship,mentee,mentee_name,mentor,mentor_name,status")
    assert [line.split(",")[:2] for line in lines[1:]] == [
        [f"mentorship/{LEARNER}/{MANAGER}/1", LEARNER]
    ]

    # The mentee sees it active (and may now log a session and give feedback).
    page.reload()
    expect(mine.get_by_text("active", exact=True)).to_be_visible()
    expect(mine.get_by_text("Give feedback")).to_be_visible()

    # ... logs a session (the form reaches the workflow's update) and gives midpoint feedback.
    mine.get_by_text("Log a session").click()
    mine.get_by_label("Minutes").fill("45")
    mine.get_by_label("Topics (comma-separated)").fill("valves, safety circuit")
    mine.get_by_role("button", name="Log session").click()
    expect(page.get_by_role("status")).to_have_text("The session is logged.")
    assert site.temporal.updates is not None
    _, name, log = site.temporal.updates[-1]
    assert name == "log_session" and log.by == LEARNER
    assert (log.duration_minutes, log.topics) == (45, ["valves", "safety circuit"])
    mine.get_by_text("Give feedback").click()
    mine.get_by_label("Rating", exact=True).select_option("4")
    mine.get_by_role("button", name="Send feedback").click()
    expect(page.get_by_role("status")).to_have_text("Thank you: your feedback is recorded.")
    _, name, feedback = site.temporal.updates[-1]
    assert (name, feedback.phase.value, feedback.rating) == ("feedback", "midpoint", 4)
    # Given once: only the end feedback is left to give.
    mine.get_by_text("Give feedback").click()
    expect(mine.get_by_label("When").locator("option")).to_have_text(["end"])

    # HR's view of every relationship.
    with httpx.Client(base_url=site.url, headers=hr) as client:
        html = client.get("/ui/mentorship").text
    assert "All mentorships" in html and f"mentorship/{LEARNER}/{MANAGER}/1" in html
    mentee_ctx.close()
    mentor_ctx.close()


def test_hr_writes_a_mentor_profile_on_the_page(site: LiveSite, context: Any) -> None:
    page = context.new_page()
    sign_in_with_token(page, site.tokens["hr"])
    page.goto("/ui/mentorship")
    page.get_by_role("link", name="Edit a mentor or mentee profile").click()
    expect(page.get_by_role("heading", name="Mentor and mentee profiles")).to_be_visible()
    page.get_by_label("Person", exact=True).fill("p-1024")
    page.get_by_label("Profile", exact=True).select_option("mentor")
    page.get_by_role("button", name="Open the profile").click()
    expect(page.locator("#computed")).to_contain_text("has no mentor profile yet")
    check_a11y(page)

    # No way to meet ticked: refused next to the checkboxes, what was typed kept.
    page.get_by_label("Years of experience").fill("9")
    page.get_by_label("Specializations").fill("Traction elevators, modernization")
    page.get_by_label("Hours a month").fill("5")
    page.get_by_label("City").fill("Boston")
    page.get_by_role("button", name="Save the mentor profile").click()
    expect(page.locator("#pf-communication-preferences-error")).to_contain_text(
        "tick at least one way to meet"
    )
    expect(page.get_by_label("Specializations")).to_have_value("Traction elevators, modernization")
    expect(page.get_by_role("alert")).to_contain_text("Not saved")
    check_a11y(page)
    shot(page, "mentorship-profile-refused")

    page.get_by_label("video", exact=True).check()
    page.get_by_role("button", name="Save the mentor profile").click()
    expect(page.get_by_role("status")).to_have_text(
        "The profile is saved: matching uses it from now on."
    )
    expect(page.get_by_label("Specializations")).to_have_value("traction elevators, modernization")
    check_a11y(page)
    api = httpx.get(
        f"{site.url}/mentorship/profile/mentor",
        params={"person": "p-1024"},
        headers=site.bearer("hr"),
    ).json()["profile"]
    assert (api["years_experience"], api["communication_preferences"]) == (9, ["video"])
