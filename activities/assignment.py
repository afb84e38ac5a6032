"""Activities of the assignment workflow: read-model writes and reminder sends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from duly.domain import ObligationUpdate, ReminderRequest, ReminderResult
from notifications.outbox import OutboundMessage, OutboxChannel, idempotency_key
from notifications.render import render
from store.db import Database
from store.models import Obligation, Person


class UnknownPerson(ApplicationError):
    """The person left the directory; retrying cannot help."""


class AssignmentActivities:
    """Activities bound to one database (sync: the worker runs them on a thread pool)."""

    def __init__(self, db: Database, outbox: OutboxChannel | None = None) -> None:
        self._db = db
        self._outbox = outbox or OutboxChannel()

    def _person(self, session_person: Person | None, external_id: str) -> Person:
        if session_person is None:
            raise UnknownPerson(
                f"person {external_id!r} is not in the directory", non_retryable=True
            )
        return session_person

    @activity.defn(name="record_obligation")
    def record_obligation(self, update: ObligationUpdate) -> None:
        """Upsert the obligation read model; an older update never overwrites a newer one."""
        with self._db.session() as session:
            person = self._person(
                session.scalar(select(Person).where(Person.external_id == update.person)),
                update.person,
            )
            row = session.scalar(
                select(Obligation).where(Obligation.workflow_id == update.workflow_id)
            )
            if row is None:
                row = Obligation(workflow_id=update.workflow_id, person_id=person.id)
                session.add(row)
            elif row.as_of > update.as_of:
                return
            row.kind = update.kind.value
            row.requirement_id = update.requirement_id
            row.requirement_title = update.requirement_title
            row.cycle = update.cycle
            row.due_date = update.due_date
            row.stage = update.stage
            row.status = update.status
            row.pack_hash = update.pack_hash
            row.acknowledged_at = update.acknowledged_at
            row.completed_at = update.completed_at
            row.as_of = update.as_of

    @activity.defn(name="send_reminder")
    def send_reminder(self, request: ReminderRequest) -> ReminderResult:
        """Render and deliver one stage's reminder to the learner, exactly once."""
        with self._db.session() as session:
            person = self._person(
                session.scalar(select(Person).where(Person.external_id == request.person)),
                request.person,
            )
            days = request.days_before_due
            context = {
                "first_name": person.name.split()[0] if person.name else person.external_id,
                "title": request.requirement_title,
                "due_date": request.due_date.isoformat(),
                "days_before_due": days,
                "days_left_phrase": f"{days} day{'s' if days != 1 else ''} left",
                "late_notice": request.late_notice,
                "stage": request.stage,
                "workflow_id": request.workflow_id,
            }
            key = idempotency_key(
                workflow_id=request.workflow_id,
                pack_hash=request.pack_hash,
                stage=request.stage,
                recipient=person.external_id,
                channel=request.channel,
            )
            delivery = self._outbox.deliver(
                session,
                OutboundMessage(
                    idempotency_key=key,
                    workflow_id=request.workflow_id,
                    person_id=person.id,
                    person_external_id=person.external_id,
                    recipient_address=person.email,
                    channel=request.channel,
                    kind=request.kind.value,
                    stage=request.stage,
                    pack_hash=request.pack_hash,
                    subject=render("assignment/reminder.subject.j2", **context),
                    body=render("assignment/reminder.txt.j2", **context),
                    fired_at=request.fired_at,
                ),
            )
            return ReminderResult(
                idempotency_key=key, status=delivery.status, duplicate=delivery.duplicate
            )

    def all(self) -> list[Callable[..., Any]]:
        """Every activity callable, for the worker."""
        return [self.record_obligation, self.send_reminder]
