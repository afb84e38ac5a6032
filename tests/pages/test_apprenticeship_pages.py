"""Apprenticeships in Chromium: the apprentice logs hours, the supervisor rejects one with a
reason and approves the other, and the period's progress shows the approved hours; the list
puts a flagged apprenticeship first; HR enrols an apprentice (a refusal shown next to its
field, nothing typed lost), suspends, transfers and reinstates; accessibility (axe-core) on
each page.

The workflow is a stand-in (:class:`ApprenticeHandle`): its updates write the hours rows and
the read model the way the workflow's record activities do, so the pages read what they read
in production (the store), and the forms go through ``services.apprenticeships``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from domain.contracts.apprenticeship import (
    ChangeEnrolment,
    LogHours,
    ReviewHours,
    SubmitEvaluation,
    TransferSupervisor,
)
from rules.loader import load_pack
from store.apprenticeships import (
    Apprenticeship,
    ApprenticeshipEvaluation,
    ApprenticeshipHours,
)
from store.models import Obligation, Person
from store.packs import Migration, deploy
from tests.pages.conftest import (
    LEARNER,
    MANAGER,
    PEER,
    LiveSite,
    PageHandle,
    PageTemporal,
    shot,
    sign_in_with_token,
)
from tests.pages.test_pages_browser import check_a11y

PACK = Path(__file__).parents[2] / "rules" / "packs" / "field-technicians"
PROGRAM = "elevator-mechanic"
MINE = f"apprenticeship/{LEARNER}/{PROGRAM}"
#: Another apprentice of the same supervisor whose previous supervisor left (flagged).
FLAGGED = f"apprenticeship/{PEER}/{PROGRAM}"


class ApprenticeHandle(PageHandle):
    """The apprenticeship workflow's updates as its record activities would write them."""

    async def execute_update(self, update: Any, arg: Any = None, **kw: Any) -> Any:
        name = getattr(update, "__name__", str(update))
        if name not in (
            "log_hours",
            "review_hours",
            "evaluate",
            "change_enrolment",
            "transfer_supervisor",
        ):
            return await super().execute_update(update, arg, **kw)
        temporal = self.temporal
        assert isinstance(temporal, PageTemporal) and temporal.updates is not None
        temporal.updates.append((self.workflow_id, name, arg))
        with temporal.db.session() as session:
            if isinstance(arg, ChangeEnrolment | TransferSupervisor):
                row = session.scalar(
                    select(Apprenticeship).where(Apprenticeship.workflow_id == self.workflow_id)
                )
                assert row is not None
                if isinstance(arg, TransferSupervisor):
                    row.supervisor = arg.supervisor
                else:
                    row.status = {"suspend": "suspended", "reinstate": "active"}.get(
                        arg.action.value, "withdrawn"
                    )
            elif isinstance(arg, SubmitEvaluation):
                session.add(
                    ApprenticeshipEvaluation(
                        workflow_id=self.workflow_id,
                        evaluation_id=arg.evaluation_id,
                        day=arg.evaluation.day,
                        score=arg.evaluation.score,
                        skills_signed_off=arg.evaluation.skills_signed_off,
                        notes=arg.notes,
                        final=arg.evaluation.final,
                        evaluator=arg.actor,
                    )
                )
            elif isinstance(arg, LogHours):
                session.add(
                    ApprenticeshipHours(
                        workflow_id=self.workflow_id,
                        entry_id=arg.entry.id,
                        day=arg.entry.day,
                        kind=arg.entry.kind.value,
                        hours=arg.entry.hours,
                        status="pending",
                        description=arg.entry.description,
                        logged_by=arg.actor,
                    )
                )
            else:
                assert isinstance(arg, ReviewHours)
                entry = session.scalar(
                    select(ApprenticeshipHours).where(
                        ApprenticeshipHours.workflow_id == self.workflow_id,
                        ApprenticeshipHours.entry_id == arg.entry_id,
                    )
                )
                assert entry is not None and entry.status == "pending"
                entry.status = "approved" if arg.approve else "rejected"
                entry.reviewed_by, entry.review_reason = arg.actor, arg.reason
                if arg.approve:
                    row = session.scalar(
                        select(Apprenticeship).where(Apprenticeship.workflow_id == self.workflow_id)
                    )
                    assert row is not None
                    row.work_approved += entry.hours
        return None


@pytest.fixture(scope="module")
def enrolled(site: LiveSite) -> None:
    """The learner apprenticed to the manager (their supervisor); a peer whose supervisor left."""
    now = datetime.now(UTC)
    with site.db.session() as session:
        pack = load_pack(PACK)
        deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
        people = {p.external_id: p for p in session.scalars(select(Person))}
        for workflow_id, person, supervisor, summary in (
            (MINE, LEARNER, MANAGER, {}),
            (FLAGGED, PEER, MANAGER, {"supervisor_left": "p-9999"}),
        ):
            session.add(
                Apprenticeship(
                    workflow_id=workflow_id,
                    person_id=people[person].id,
                    program_id=PROGRAM,
                    program_name="Elevator Mechanic Apprenticeship",
                    pack_hash=pack.content_hash,
                    supervisor=supervisor,
                    status="active",
                    compliance_status="on_track",
                    decided_by="apprenticeship-progress:on-track",
                    period=1,
                    wage_percentage=50,
                    enrolled_on=now.date() - timedelta(days=30),
                    expected_completion=now.date() + timedelta(days=4 * 365 - 30),
                    summary=summary,
                    as_of=now,
                )
            )
        session.add(
            Obligation(
                workflow_id=MINE,
                person_id=people[LEARNER].id,
                kind="apprenticeship",
                requirement_id=PROGRAM,
                requirement_title="Elevator Mechanic Apprenticeship",
                status="on_track",
                pack_hash=pack.content_hash,
                as_of=now,
            )
        )
    temporal = site.temporal
    temporal.get_workflow_handle = lambda workflow_id, **_: ApprenticeHandle(  # type: ignore[method-assign]
        workflow_id, temporal
    )


def test_log_reject_approve_and_the_progress_shows(
    site: LiveSite, context: Any, enrolled: None
) -> None:
    # The apprentice: from My compliance to the apprenticeship, logs two days of work.
    page = context.new_page()
    sign_in_with_token(page, site.tokens["learner"])
    page.goto("/ui/me")
    page.get_by_role("link", name="Elevator Mechanic Apprenticeship").click()
    page.wait_for_url(f"**/ui/apprenticeships/{MINE}")
    expect(page.locator("#kpi-period")).to_have_text("1: Probationary")
    expect(page.locator("#status-rule")).to_have_text("apprenticeship-progress:on-track")
    check_a11y(page)
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    for hours, note in (("8", "Hoistway safety walk-down"), ("2.5", "typo: wrong day")):
        page.get_by_label("Date", exact=True).fill(yesterday)
        page.get_by_label("Hours", exact=True).fill(hours)
        page.get_by_label("Kind", exact=True).select_option("work")
        page.get_by_label("Note", exact=True).fill(note)
        page.get_by_role("button", name="Log hours").click()
        expect(page.get_by_role("status")).to_contain_text("Your hours are logged")
    expect(page.locator("#work-1-text")).to_have_text("0 of 2000 approved, 10.5 pending")
    # The apprentice reviews nothing: no approve button for them.
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)

    # The supervisor: the list, the apprenticeship, one rejection (a reason), one approval.
    boss = context.browser.new_context(base_url=site.url)
    try:
        sup = boss.new_page()
        sign_in_with_token(sup, site.tokens["manager"])
        sup.get_by_role("link", name="Apprenticeships").click()
        sup.wait_for_url("**/ui/apprenticeships")
        rows = sup.locator("table tbody tr")
        expect(rows.first).to_contain_text("supervisor p-9999 left")  # flagged: first
        check_a11y(sup)
        shot(sup, "apprenticeships")
        sup.get_by_role("link", name="Ava Fakeworth").click()
        sup.wait_for_url(f"**/ui/apprenticeships/{MINE}")
        wrong = sup.locator("tr", has_text="typo: wrong day")
        wrong.get_by_label("Reason", exact=True).fill(
            "you were on leave that day: log the right date"
        )
        wrong.get_by_role("button", name="Reject").click()
        expect(sup.get_by_role("status")).to_contain_text("The entry is rejected")
        sup.locator("tr", has_text="Hoistway safety walk-down").get_by_role(
            "button", name="Approve"
        ).click()
        expect(sup.get_by_role("status")).to_contain_text("The entry is approved")
        expect(sup.locator("#work-1-text")).to_have_text("8 of 2000 approved")
        expect(sup.locator("#work-1")).to_have_attribute("value", "8.0")
        expect(sup.locator("#kpi-work")).to_have_text("8")
        expect(sup.get_by_role("button", name="Approve")).to_have_count(0)
        # An evaluation signing off one skill of period 1: it moves to signed off.
        sup.get_by_label("Score (0–100)").fill("85")
        sup.get_by_label("Lockout/tagout of elevator equipment").check()
        sup.get_by_label("Notes", exact=True).fill("Careful and methodical")
        sup.get_by_role("button", name="Record evaluation").click()
        expect(sup.get_by_role("status")).to_contain_text("The evaluation is recorded")
        expect(sup.locator("#periods + table tbody tr").first).to_contain_text(
            "✓ Lockout/tagout of elevator equipment"
        )
        expect(sup.locator("#evaluations + table")).to_contain_text("Careful and methodical")
        check_a11y(sup)
        shot(sup, "apprenticeship")
    finally:
        boss.close()
    reviews = [
        (a.entry_id, a.approve) for _, n, a in site.temporal.updates or [] if n == "review_hours"
    ]
    assert len(reviews) == 2 and {approve for _, approve in reviews} == {True, False}

    # The apprentice may not approve their own hours (the service's rule: 403).
    own = f"{site.url}/ui/apprenticeships/{MINE}/hours/any/approve"
    assert httpx.post(own, headers=site.bearer("learner")).status_code == 403

    # The auditor reads it; another learner's token cannot see it (404, as the API answers).
    assert (
        httpx.get(
            f"{site.url}/ui/apprenticeships/{MINE}", headers=site.bearer("auditor")
        ).status_code
        == 200
    )
    assert (
        httpx.get(
            f"{site.url}/ui/apprenticeships/{FLAGGED}", headers=site.bearer("learner")
        ).status_code
        == 404
    )
    # The list as CSV: the page's rows, the flagged one first, and only what the caller may see.
    hr_csv = httpx.get(f"{site.url}/ui/apprenticeships.csv", headers=site.bearer("auditor"))
    assert hr_csv.status_code == 200 and hr_csv.headers["content-type"].startswith("text/csv")
    lines = hr_csv.text.splitlines()
    assert lines[0].startswith("apprenticeship,apprentice,apprentice_name,program")
    assert lines[1].startswith(f"{FLAGGED},") and any(x.startswith(f"{MINE},") for x in lines)
    mine_csv = httpx.get(f"{site.url}/ui/apprenticeships.csv", headers=site.bearer("learner"))
    assert FLAGGED not in mine_csv.text and MINE in mine_csv.text


def test_hr_enrols_suspends_transfers_and_reinstates(
    site: LiveSite, context: Any, enrolled: None
) -> None:
    newcomer = "p-1022"
    page = context.new_page()
    sign_in_with_token(page, site.tokens["hr"])
    page.goto("/ui/apprenticeships")
    expect(page.get_by_role("heading", name="Enrol an apprentice")).to_be_visible()
    check_a11y(page)

    # A supervisor who is not in the directory: refused next to the field, nothing lost.
    page.get_by_label("Apprentice", exact=True).fill(newcomer)
    page.get_by_label("Supervisor", exact=True).fill("p-0000")
    page.get_by_role("button", name="Enrol").click()
    supervisor = page.get_by_label("Supervisor", exact=True)
    expect(page.locator("#enrol-supervisor-error")).to_contain_text(
        "supervisor 'p-0000' is not in the directory; import them first"
    )
    expect(supervisor).to_have_attribute("aria-invalid", "true")
    expect(supervisor).to_have_value("p-0000")
    expect(page.get_by_label("Apprentice", exact=True)).to_have_value(newcomer)
    expect(page.get_by_role("alert")).to_contain_text("Not saved")
    check_a11y(page)
    shot(page, "apprenticeships-enrol-refused")
    assert not [s for s, _ in site.temporal.started if s.person == newcomer]

    # Fixed: the apprenticeship starts and its page confirms it.
    supervisor.fill(MANAGER)
    page.get_by_role("button", name="Enrol").click()
    wid = f"apprenticeship/{newcomer}/{PROGRAM}"
    expect(page.get_by_role("status")).to_contain_text("The apprentice is enrolled")
    expect(page.locator("main p.muted code")).to_have_text(wid)
    [(started, options)] = [(s, o) for s, o in site.temporal.started if s.person == newcomer]
    assert (started.supervisor, options["id"]) == (MANAGER, wid)
    expect(page.locator("#kpi-status")).to_have_text("active")

    # Suspend with a reason; the status follows and only "reinstate" is offered.
    page.get_by_label("Why it is suspended").fill("Medical leave until March")
    page.get_by_role("button", name="Suspend the apprenticeship").click()
    expect(page.get_by_role("status")).to_contain_text("The apprenticeship is suspended")
    expect(page.locator("#kpi-status")).to_have_text("suspended")
    expect(page.get_by_role("button", name="Reinstate the apprenticeship")).to_be_visible()
    check_a11y(page)
    shot(page, "apprenticeship-hr-actions")

    # Transfer to another journeyworker, then reinstate.
    page.get_by_label("New supervisor").fill(PEER)
    page.get_by_role("button", name="Transfer").click()
    expect(page.get_by_role("status")).to_contain_text("The supervisor is changed")
    expect(page.locator("main > p.muted").first).to_contain_text(f"supervisor {PEER}")
    page.get_by_role("button", name="Reinstate the apprenticeship").click()
    expect(page.get_by_role("status")).to_contain_text("The apprenticeship is reinstated")
    expect(page.locator("#kpi-status")).to_have_text("active")
    changes = [
        (n, getattr(a, "action", None) and a.action.value, getattr(a, "reason", None))
        for w, n, a in site.temporal.updates or []
        if w == wid
    ]
    assert changes == [
        ("change_enrolment", "suspend", "Medical leave until March"),
        ("transfer_supervisor", None, ""),
        ("change_enrolment", "reinstate", ""),
    ]
