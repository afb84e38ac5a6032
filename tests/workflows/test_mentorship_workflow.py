"""MentorshipWorkflow on the time-skipping server: expiry, cadence nudges, capacity, completion."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from activities import mentorship_profiles as profiles
from domain import Role
from domain.contracts.mentorship import (
    AcceptRequest,
    ActionItem,
    CompleteMentorship,
    FeedbackPhase,
    FeedbackRequest,
    MentorshipInput,
    MentorshipState,
    MentorshipStatus,
    SessionLog,
    mentorship_workflow_id,
)
from duly.worker import build_worker
from rules.loader import load_pack
from rules.mentorship_model import (
    Availability,
    CommunicationStyle,
    MenteeLevel,
    MenteeProfile,
    MentorProfile,
)
from services import mentorships
from store import mentorship as store
from store.db import Database
from store.models import MentorProfileRow, Mentorship, Notification, Person
from store.packs import Migration, deploy
from store.tokens import Principal
from tests.timeskip import skip_to
from workflows.mentorship import MentorshipWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="module")

FIELD = Path(__file__).parents[2] / "rules" / "packs" / "field-technicians"
Handle = WorkflowHandle[MentorshipWorkflow, MentorshipState]


class Org:
    """Two mentees, a mentor with one slot, and a second mentor; the field-technicians pack."""

    def __init__(self, db: Database) -> None:
        pack = load_pack(FIELD)
        self.pack_hash = pack.content_hash
        self.policy = pack.mentorship
        tag = uuid.uuid4().hex[:6]
        self.mentee, self.mentee2 = f"a-{tag}", f"b-{tag}"
        self.mentor, self.mentor2 = f"m-{tag}", f"n-{tag}"
        video = [CommunicationStyle.VIDEO]
        hours = Availability(hours_per_month=4)
        with db.session() as session:
            deploy(session, pack, author="hr", message="v1", migration=Migration.GRANDFATHER)
            people = {}
            for pid in (self.mentee, self.mentee2, self.mentor, self.mentor2):
                people[pid] = Person(
                    external_id=pid,
                    name=f"Person {pid}",
                    email=f"{pid}@example.com",
                    phone="+15550100100",
                    time_zone="UTC",
                )
                session.add(people[pid])
            session.flush()
            for pid, years, city in ((self.mentor, 12, "Denver"), (self.mentor2, 8, "Boulder")):
                profiles.save_mentor(
                    session,
                    people[pid],
                    MentorProfile(
                        person_id=pid,
                        years_experience=years,
                        specializations=["hydraulic elevators"],
                        max_mentees=1,
                        communication_preferences=video,
                        availability=hours,
                        city=city,
                        region="CO",
                    ),
                )
            for pid in (self.mentee, self.mentee2):
                profiles.save_mentee(
                    session,
                    people[pid],
                    MenteeProfile(
                        person_id=pid,
                        level=MenteeLevel.APPRENTICE,
                        years_experience=1,
                        specialization_interests=["hydraulic elevators"],
                        communication_preferences=video,
                        availability=hours,
                        city="Denver",
                        region="CO",
                    ),
                )
        self.ids = {pid: p.id for pid, p in people.items()}

    def input(self, mentee: str) -> MentorshipInput:
        return MentorshipInput(
            workflow_id=mentorship_workflow_id(mentee, self.mentor, 1),
            mentee=mentee,
            mentor=self.mentor,
            pack_hash=self.pack_hash,
            terms=mentorships.terms_of(self.policy),
            duration_months=6,
        )


async def _start(env: WorkflowEnvironment, tq: str, inp: MentorshipInput) -> Handle:
    return await env.client.start_workflow(
        MentorshipWorkflow.run, inp, id=inp.workflow_id, task_queue=tq
    )


async def _wait_for(db: Database, workflow_id: str, status: str) -> None:
    """The read model reaches ``status`` (written by an activity just after the workflow acts)."""
    for _ in range(200):
        with db.session() as session:
            row = store.relationship(session, workflow_id)
            if row is not None and row.status == status:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} never became {status}")


def _stages(db: Database, workflow_id: str) -> list[tuple[str, str | None, int | None]]:
    """(stage, recipient role, person id) of every email sent for the relationship, in order."""
    with db.session() as session:
        rows = session.scalars(
            select(Notification)
            .where(Notification.workflow_id == workflow_id, Notification.channel == "email")
            .order_by(Notification.fired_at, Notification.id)
        )
        return [(r.stage, r.recipient_role, r.person_id) for r in rows]


def _slots(db: Database, org: Org) -> int:
    with db.session() as session:
        row = session.scalar(
            select(MentorProfileRow).where(MentorProfileRow.person_id == org.ids[org.mentor])
        )
        assert row is not None
        return row.active_mentees


async def test_unanswered_request_expires_and_shows_the_next_best_match(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    org = Org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    start = await env.get_current_time()
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await _start(env, tq, org.input(org.mentee))
        await _wait_for(sqlite_db, handle.id, "pending")
        # Reminded halfway (day 3 of 7), still pending just before day 7.
        await skip_to(env, start + timedelta(days=7) - timedelta(minutes=1))
        assert (await handle.query(MentorshipWorkflow.state)).status is MentorshipStatus.PENDING
        await skip_to(env, start + timedelta(days=7, minutes=1))
        state = await handle.result()
    assert state.status is MentorshipStatus.EXPIRED
    assert state.reason == "no answer within 7 days"
    assert state.next_matches == [org.mentor2]  # the mentor who did not answer is left out
    await _wait_for(sqlite_db, handle.id, "expired")
    mentor, mentee = org.ids[org.mentor], org.ids[org.mentee]
    assert _stages(sqlite_db, handle.id) == [
        ("request", "learner", mentor),
        ("request-2", "learner", mentor),
        ("expired", "learner", mentee),
    ]
    assert _slots(sqlite_db, org) == 0


async def test_cadence_nudges_mentee_then_mentor_and_stop_when_a_session_is_logged(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    org = Org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await _start(env, tq, org.input(org.mentee))
        state = await handle.execute_update(MentorshipWorkflow.accept, AcceptRequest(by=org.mentor))
        assert state.status is MentorshipStatus.ACTIVE
        assert _slots(sqlite_db, org) == 1
        started = state.started_at
        assert started is not None
        # 14-day cadence: the mentee at day 14, the mentor at day 17 (pack: +0, +3, +7 days).
        await skip_to(env, started + timedelta(days=17, minutes=1))
        today = (await env.get_current_time()).date()
        await handle.execute_update(
            MentorshipWorkflow.log_session,
            SessionLog(by=org.mentee, held_on=today, duration_minutes=60),
        )
        # The coordinator's rung (day 21) never comes: the session restarted the cadence.
        await skip_to(env, started + timedelta(days=25))
        state = await handle.query(MentorshipWorkflow.state)
        assert state.sessions == 1
        assert state.next_session_due is not None
        assert state.next_session_due > started + timedelta(days=30)
        if os.environ.get("DULY_RECORD_HISTORIES"):
            # The replay fixture (see test_recorded_histories_replay_against_todays_code).
            history = await handle.fetch_history()
            (Path(__file__).parent / "histories" / "mentorship_cadence.json").write_text(
                history.to_json()
            )
        await handle.terminate("test done")
    sent = [(stage, role) for stage, role, _ in _stages(sqlite_db, handle.id)]
    assert sent == [
        ("request", "learner"),
        ("accepted", "learner"),
        ("s0:mentee", "learner"),
        ("s0:mentor", "learner"),
    ]
    with sqlite_db.session() as session:
        sms = session.scalars(
            select(Notification.stage).where(
                Notification.workflow_id == handle.id, Notification.channel == "sms"
            )
        )
        assert sorted(sms) == ["s0:mentee", "s0:mentor"]  # the pack nudges by SMS too


async def test_two_acceptances_of_the_last_slot_make_exactly_one_active(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    org = Org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        first = await _start(env, tq, org.input(org.mentee))
        second = await _start(env, tq, org.input(org.mentee2))
        await _wait_for(sqlite_db, first.id, "pending")
        await _wait_for(sqlite_db, second.id, "pending")
        results = await asyncio.gather(
            first.execute_update(MentorshipWorkflow.accept, AcceptRequest(by=org.mentor)),
            second.execute_update(MentorshipWorkflow.accept, AcceptRequest(by=org.mentor)),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, MentorshipState)]
        lost = [r for r in results if isinstance(r, WorkflowUpdateFailedError)]
        assert len(won) == 1 and len(lost) == 1, results
        assert "no free slot (1 of 1 taken)" in str(lost[0].cause)
        assert _slots(sqlite_db, org) == 1
        loser = second if won[0].workflow_id == first.id else first
        state = await loser.query(MentorshipWorkflow.state)
        assert state.status is MentorshipStatus.PENDING
        # The mentee who lost is told why and shown the next best mentors, like on expiry.
        assert state.next_matches == [org.mentor2]
        assert [e.kind for e in state.events].count("slot_lost") == 1
        # A second refused acceptance of the same request tells them nothing more.
        with pytest.raises(WorkflowUpdateFailedError) as again:
            await loser.execute_update(MentorshipWorkflow.accept, AcceptRequest(by=org.mentor))
        assert "no free slot" in str(again.value.cause)
        loser_mentee = org.ids[org.mentee2 if loser is second else org.mentee]
        told = [s for s in _stages(sqlite_db, loser.id) if s[0] == "race-lost"]
        assert told == [("race-lost", "learner", loser_mentee)]
        with sqlite_db.session() as session:
            channels = sorted(
                session.scalars(
                    select(Notification.channel).where(
                        Notification.workflow_id == loser.id, Notification.stage == "race-lost"
                    )
                )
            )
        assert channels == ["email", "in_app"]
        winner = first if loser is second else second
        assert not [s for s in _stages(sqlite_db, winner.id) if s[0] == "race-lost"]
        await first.terminate("test done")
        await second.terminate("test done")


async def test_completion_frees_the_slot_and_counts_in_the_mentor_record(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    org = Org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    mentee = Principal(
        token_id=0,
        role=Role.LEARNER,
        person_id=org.ids[org.mentee],
        person_external_id=org.mentee,
        label=None,
    )

    async def connect() -> object:
        return env.client

    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await _start(env, tq, org.input(org.mentee))
        state = await handle.execute_update(MentorshipWorkflow.accept, AcceptRequest(by=org.mentor))
        started = state.started_at
        assert started is not None
        today = (await env.get_current_time()).date()
        await handle.execute_update(
            MentorshipWorkflow.log_session,
            SessionLog(
                by=org.mentee,
                held_on=today,
                duration_minutes=45,
                action_items=[
                    ActionItem(
                        description="read the hydraulics manual",
                        assignee="mentee",
                        due_on=today + timedelta(days=2),
                    )
                ],
            ),
        )
        # The action item is reminded on its due date (09:00 UTC), to the mentee.
        due = datetime.combine(today + timedelta(days=2), time(9, 1), UTC)
        await skip_to(env, due)
        # Midpoint feedback is asked of both sides (6 months: about day 91).
        await skip_to(env, started + timedelta(days=93))
        state = await handle.query(MentorshipWorkflow.state)
        assert any(e.kind == "feedback_requested" for e in state.events)
        await mentorships.feedback(
            sqlite_db,
            connect,  # type: ignore[arg-type]
            principal=mentee,
            workflow_id=handle.id,
            body={"phase": "midpoint", "rating": 4},
        )
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                MentorshipWorkflow.feedback,
                FeedbackRequest(by=org.mentee, phase=FeedbackPhase.MIDPOINT, rating=5),
            )
        assert "already gave midpoint feedback" in str(refused.value.cause)
        await handle.execute_update(
            MentorshipWorkflow.complete, CompleteMentorship(by=org.mentor, note="done early")
        )
        final = await handle.result()
    assert final.status is MentorshipStatus.COMPLETED
    await _wait_for(sqlite_db, handle.id, "completed")
    assert _slots(sqlite_db, org) == 0
    with sqlite_db.session() as session:
        (mentor,) = profiles.mentor_profiles(session, only=org.mentor)
        row = session.scalar(select(Mentorship).where(Mentorship.workflow_id == handle.id))
        assert row is not None and not row.holds_slot
    assert mentor.track_record.mentees == 1
    assert mentor.track_record.completions == 1
    assert mentor.track_record.average_rating == 4
    stages = [stage for stage, _, _ in _stages(sqlite_db, handle.id)]
    assert "action-1" in stages
    assert stages.count("fb-midpoint") == 2  # mentee and mentor
    assert stages[-2:] == ["completed", "completed"]


async def test_no_sessions_reach_the_coordinator_and_the_end_date_completes_it(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    org = Org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    inp = org.input(org.mentee).model_copy(update={"duration_months": 1})
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await _start(env, tq, inp)
        state = await handle.execute_update(MentorshipWorkflow.accept, AcceptRequest(by=org.mentor))
        assert state.ends_at is not None
        # The end date: both are asked for end feedback; a week later it completes by itself.
        await skip_to(env, state.ends_at + timedelta(minutes=1))
        assert (await handle.query(MentorshipWorkflow.state)).status is MentorshipStatus.ACTIVE
        await handle.execute_update(
            MentorshipWorkflow.feedback,
            FeedbackRequest(by=org.mentor, phase=FeedbackPhase.END, rating=5),
        )
        await skip_to(env, state.ends_at + timedelta(days=7, minutes=1))
        final = await handle.result()
    assert final.status is MentorshipStatus.COMPLETED
    assert final.reason == "end date reached"
    assert "end mentor 5" in final.feedback
    sent = [(stage, role) for stage, role, _ in _stages(sqlite_db, handle.id)]
    nudges = [s for s in sent if s[0].startswith("s0:")]
    # One ladder for the one missed period: mentee, mentor, then the pack's HR mailbox.
    assert nudges == [("s0:mentee", "learner"), ("s0:mentor", "learner"), ("s0:coordinator", "hr")]
    assert [s for s, _ in sent].count("fb-midpoint") == 2
    assert [s for s, _ in sent].count("fb-end") == 2
    assert _slots(sqlite_db, org) == 0


async def test_both_end_feedbacks_complete_it_before_the_deadline(
    env: WorkflowEnvironment, sqlite_db: Database
) -> None:
    org = Org(sqlite_db)
    tq = f"tq-{uuid.uuid4()}"
    inp = org.input(org.mentee).model_copy(update={"duration_months": 1})
    async with build_worker(env.client, task_queue=tq, db=sqlite_db):
        handle = await _start(env, tq, inp)
        state = await handle.execute_update(MentorshipWorkflow.accept, AcceptRequest(by=org.mentor))
        assert state.ends_at is not None
        await skip_to(env, state.ends_at + timedelta(minutes=1))
        for by, rating in ((org.mentor, 5), (org.mentee, 3)):
            await handle.execute_update(
                MentorshipWorkflow.feedback,
                FeedbackRequest(by=by, phase=FeedbackPhase.END, rating=rating),
            )
        final = await handle.result()
    assert final.status is MentorshipStatus.COMPLETED
    assert final.ended_at is not None
    assert final.ended_at < state.ends_at + timedelta(days=1)
