"""Tracks and projects in Chromium: HR's summaries equal the API's, a track's people, a
project's go-live readiness (who blocks and why), the learner's own tracks; accessibility."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from rules.loader import load_pack
from store.models import Obligation, Person, Project, ProjectTrack, TrackEnrolment
from store.packs import Migration, deploy
from tests.pages.conftest import LEARNER, MANAGER, PEER, LiveSite, shot, sign_in_with_token
from tests.pages.test_pages_browser import check_a11y

MEDICAL = Path(__file__).parents[2] / "rules" / "packs" / "medical-practice"
TRACK = "site-administrator"
HIPAA, SYSTEMS = "hipaa-privacy-security", "research-systems-admin"
NOT_STARTED = "p-1022"
PROJECT = "Riverside imaging study"


@pytest.fixture(scope="module")
def seeded(site: LiveSite) -> int:
    """The medical pack; three people in the site-administrator track (done, halfway, not
    started); a project managed by the manager, needing two of them, two weeks from go-live."""
    now = datetime.now(UTC)
    with site.db.session() as session:
        pack = load_pack(MEDICAL)
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        people = {p.external_id: p for p in session.scalars(select(Person))}
        done: dict[str, tuple[str, ...]] = {
            LEARNER: (HIPAA, SYSTEMS),
            PEER: (HIPAA,),
            NOT_STARTED: (),
        }
        for ext, completed in done.items():
            person = people[ext]
            session.add(
                TrackEnrolment(
                    person_id=person.id,
                    track_id=TRACK,
                    pack_hash=pack.content_hash,
                    enrolled_on=now.date() - timedelta(days=10),
                    enrolled_at=now - timedelta(days=10),
                    source="hr",
                    enrolled_by="hr",
                )
            )
            for requirement in (HIPAA, SYSTEMS):
                finished = requirement in completed
                started = finished or (ext == PEER and requirement == SYSTEMS)
                session.add(
                    Obligation(
                        workflow_id=f"assignment/{ext}/{requirement}/1",
                        person_id=person.id,
                        kind="training",
                        requirement_id=requirement,
                        requirement_title=requirement,
                        due_date=now.date() + timedelta(days=20),
                        status="completed" if finished else "assigned",
                        pack_hash=pack.content_hash,
                        as_of=now - timedelta(days=2),
                        started_at=now - timedelta(days=3) if started else None,
                        completed_at=now - timedelta(days=2) if finished else None,
                    )
                )
        project = Project(
            name=PROJECT,
            client="Riverside Clinic",
            go_live=date.today() + timedelta(days=14),
            manager_id=people[MANAGER].id,
        )
        session.add(project)
        session.flush()
        session.add(
            ProjectTrack(
                project_id=project.id,
                track_id=TRACK,
                people_needed=2,
                due_date=project.go_live,
            )
        )
        return project.id


def cells(page: Any, row: str) -> dict[str, str]:
    """The ``data-count`` cells of one table row, by name."""
    found: dict[str, str] = page.eval_on_selector_all(
        f"{row} [data-count]",
        "els => Object.fromEntries(els.map(e => [e.dataset.count, e.textContent.trim()]))",
    )
    return found


def test_hr_sees_tracks_and_a_projects_readiness_as_the_api_does(
    site: LiveSite, context: Any, seeded: int
) -> None:
    page = context.new_page()
    sign_in_with_token(page, site.tokens["hr"])
    page.goto("/ui/org")
    page.get_by_role("link", name="tracks and learning paths").click()
    page.wait_for_url("**/ui/tracks")
    api = httpx.get(f"{site.url}/tracks/{TRACK}/summary", headers=site.bearer("hr")).json()
    shown = cells(page, f"#track-{TRACK}")
    assert shown == {
        "enrolled": str(api["enrolled"]),
        "completed": str(api["completed"]),
        "in_progress": str(api["in_progress"]),
        "not_started": str(api["not_started"]),
        "failed": str(api["failed"]),
        "average_completion": f"{api['average_completion']:.1f}%",
    }
    assert (api["enrolled"], api["completed"], api["in_progress"], api["not_started"]) == (
        3,
        1,
        1,
        1,
    )
    check_a11y(page)
    shot(page, "tracks")

    page.get_by_role("link", name="Research site administrator").click()
    page.wait_for_url(f"**/ui/tracks/{TRACK}")
    people = page.locator("#people + p + table")
    expect(people.get_by_role("link", name="Ava Fakeworth")).to_be_visible()
    [mine] = httpx.get(f"{site.url}/people/{LEARNER}/tracks", headers=site.bearer("hr")).json()
    code = mine["certificate_code"]
    assert code is not None
    expect(people.get_by_role("link", name=code)).to_have_attribute("href", f"/verify/{code}")
    check_a11y(page)
    shot(page, "track")

    # The project: what go-live needs against what is done, who blocks and why.
    page.get_by_role("link", name="Projects", exact=True).click()
    page.get_by_role("link", name=PROJECT).click()
    page.wait_for_url(f"**/ui/projects/{seeded}")
    readiness = httpx.get(
        f"{site.url}/projects/{seeded}/readiness", headers=site.bearer("hr")
    ).json()
    [blocking] = readiness["blocking"]
    assert cells(page, f"#need-{TRACK}") == {
        "required": str(blocking["required"]),
        "completed": str(blocking["completed"]),
        "in_progress": str(blocking["in_progress"]),
        "failed": str(blocking["failed"]),
    }
    assert (blocking["required"], blocking["completed"]) == (2, 1)
    why = page.locator(f"#need-{TRACK} .blockers li")
    assert why.all_inner_texts() == blocking["people_not_done"]
    expect(why.first).to_contain_text("1 of 2 required courses done")
    expect(page.locator("#kpi-days")).to_have_text("14")
    expect(page.locator("#kpi-ready")).to_have_text("no")
    check_a11y(page)
    shot(page, "project-readiness")
    csv = httpx.get(
        f"{site.url}/ui/projects/{seeded}/readiness.csv", headers=site.bearer("hr")
    ).text
    assert csv.splitlines()[0].startswith("track,name,people_needed,completed")


def test_the_project_manager_and_the_learner_see_their_own(
    site: LiveSite, context: Any, seeded: int
) -> None:
    # The manager manages the project; a learner may not open these pages at all.
    assert httpx.get(f"{site.url}/ui/projects", headers=site.bearer("learner")).status_code == 403
    page = context.new_page()
    sign_in_with_token(page, site.tokens["manager"])
    page.get_by_role("link", name="Projects", exact=True).click()
    expect(page.get_by_role("link", name=PROJECT)).to_be_visible()
    page.goto("/ui/tracks")
    check_a11y(page)
    # Their team's people only, as the API counts them for the same token.
    team = httpx.get(f"{site.url}/tracks/{TRACK}/summary", headers=site.bearer("manager")).json()
    assert cells(page, f"#track-{TRACK}")["enrolled"] == str(team["enrolled"])

    learner = context.browser.new_context(base_url=site.url)
    try:
        mine = learner.new_page()
        sign_in_with_token(mine, site.tokens["learner"])
        mine.goto("/ui/me")
        tracks = mine.locator("#my-tracks + table")
        expect(tracks.get_by_text("Research site administrator")).to_be_visible()
        expect(tracks.get_by_text("completed")).to_be_visible()
        expect(tracks.get_by_role("link", name="DULY-")).to_have_attribute(
            "href", re.compile(r"^/verify/DULY-")
        )
        check_a11y(mine)
    finally:
        learner.close()
