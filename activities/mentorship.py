"""Activities of the mentorship workflow: its read model, the mentor's slot, the next matches.

Reminders and nudges go through the shared ``send_reminder`` (``workflows.ladder``), so they
use the same recipients, channels, quiet hours and exactly-once ledger as every family.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities import mentorship_profiles as profiles
from activities.assigning import AssignmentStarter
from activities.mentorship_requirements import RequirementFollower
from activities.packs import load_version
from domain.contracts.mentorship import (
    ClaimRequest,
    ClaimResult,
    MentorshipRecord,
    NextMatchesRequest,
)
from rules.matching import find_mentors
from rules.mentorship_model import MentorshipPolicy
from store import mentorship as store
from store.db import Database
from store.models import Mentorship


class MentorshipActivities:
    """Activities bound to one database (sync ones run on the worker's thread pool).

    Args:
        db: The read models.
        client: With ``start_assignment``, lets ``record_mentorship`` complete and re-open the
            pack's mentorship requirements (:mod:`activities.mentorship_requirements`);
            without them it only writes the read model.
        start_assignment: :func:`services.assignments.start_assignment` (wired by the shell).
    """

    def __init__(
        self,
        db: Database,
        client: Client | None = None,
        *,
        start_assignment: AssignmentStarter | None = None,
    ) -> None:
        self._db = db
        self._follower = (
            RequirementFollower(db, client, start_assignment)
            if client is not None and start_assignment is not None
            else None
        )

    @activity.defn(name="record_mentorship")
    async def record_mentorship(self, record: MentorshipRecord) -> None:
        """Upsert the relationship's read model, then let the pack's requirements follow it.

        Every transition the workflow makes is recorded here (accepted, completed, cancelled by
        anyone or anything, expired...), so the requirements follow every path. An older
        update never overwrites a newer one, and then does nothing more.
        """
        fresh = await asyncio.to_thread(self._write, record)
        if fresh and self._follower is not None:
            await self._follower.follow(record, task_queue=activity.info().task_queue)

    def _write(self, record: MentorshipRecord) -> bool:
        with self._db.session() as session:
            mentee = store.person(session, record.mentee)
            mentor = store.person(session, record.mentor)
            if mentee is None or mentor is None:
                missing = record.mentee if mentee is None else record.mentor
                raise ApplicationError(
                    f"person {missing!r} is not in the directory", non_retryable=True
                )
            row = store.relationship(session, record.workflow_id)
            if row is None:
                row = Mentorship(
                    workflow_id=record.workflow_id, mentee_id=mentee.id, mentor_id=mentor.id
                )
                session.add(row)
            elif store.newer(row, record.as_of):
                return False
            row.status = record.status.value
            row.type = record.type.value
            row.goals = list(record.goals)
            row.milestones = list(record.milestones)
            row.duration_months = record.duration_months
            row.requested_at = record.requested_at
            row.started_at = record.started_at
            row.ended_at = record.ended_at
            row.reason = record.reason
            row.as_of = record.as_of
        return True

    @activity.defn(name="claim_mentor_slot")
    def claim_slot(self, request: ClaimRequest) -> ClaimResult:
        """Take one of the mentor's slots (atomic conditional UPDATE; idempotent per workflow)."""
        with self._db.session() as session:
            reason = store.claim_slot(
                session, workflow_id=request.workflow_id, mentor=request.mentor
            )
        return ClaimResult(claimed=reason is None, reason=reason)

    @activity.defn(name="release_mentor_slot")
    def release_slot(self, request: ClaimRequest) -> None:
        """Give the relationship's slot back (idempotent)."""
        with self._db.session() as session:
            store.release_slot(session, workflow_id=request.workflow_id)

    @activity.defn(name="next_mentor_matches")
    def next_matches(self, request: NextMatchesRequest) -> list[str]:
        """The mentee's next best mentors under the pinned pack's weights (ids, best first)."""
        with self._db.session() as session:
            pack = load_version(session, request.pack_hash)
            policy = pack.mentorship if pack is not None else MentorshipPolicy()
            mentees = profiles.mentee_profiles(session, only=request.mentee)
            if not mentees:
                return []
            mentors = profiles.prepared_mentors(session)
        # The excluded mentors are dropped from a list long enough to still hold ``limit``.
        matches = find_mentors(
            mentees[0],
            mentors,
            policy.weights,
            request.limit + len(request.exclude),
            ideal_gap=policy.ideal_experience_gap,
        )
        kept = [m.person_id for m in matches if m.person_id not in request.exclude]
        return kept[: request.limit]

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for the worker."""
        return [self.record_mentorship, self.claim_slot, self.release_slot, self.next_matches]
