"""Activities of the apprenticeship workflow: its program, its notices, its records, its awards.

Thin adapters. Notices go through the same :class:`~notifications.delivery.Deliverer` and
ledger as every reminder (one row per (workflow, pack, key, recipient, channel): a retried
activity or a replayed run never sends twice). The awards at graduation are registered by a
function the worker injects (``services.apprenticeships.register_awards``: the certification
service, so each award gets its ``CertificationWorkflow`` and verification code).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.packs import load_version, person_attributes
from domain.contracts.apprenticeship import (
    APPRENTICESHIP_KIND,
    AwardRequest,
    DecideApprenticeship,
    NoticeRequest,
    ProgramRequest,
    RecordApprenticeship,
    RecordEntry,
    RecordEvaluation,
)
from notifications.delivery import Deliverer, Recipient, Rendered, Step
from notifications.recipients import person_recipient, up_the_chain
from rules.apprenticeship_model import Program
from rules.engine import Decision, FactsError, NoRuleMatched, engine_for
from rules.facts import KIND_FACTS, complete_facts
from rules.model import Pack
from store.apprenticeships import Apprenticeship, ApprenticeshipEvaluation, ApprenticeshipHours
from store.db import Database
from store.models import Certificate, Obligation, Person

#: Certificate statuses that do not count as held (graduation requirements).
NOT_HELD = ("suspended", "revoked", "superseded", "expired", "lapsed")

#: Registers one graduation's awards; returns one line per certification.
AwardRegistrar = Callable[[AwardRequest, str], Awaitable[list[str]]]


class ApprenticeshipActivities:
    """Activities bound to one database, one deliverer and the award registrar."""

    def __init__(
        self, db: Database, deliverer: Deliverer, register_awards: AwardRegistrar | None = None
    ) -> None:
        self._db = db
        self._deliverer = deliverer
        self._register_awards = register_awards

    def _pack(self, pack_hash: str) -> Pack:
        with self._db.session() as session:
            pack = load_version(session, pack_hash)
        if pack is None:
            raise ApplicationError(
                f"pack version {pack_hash[:12]} is not stored", non_retryable=True
            )
        return pack

    @activity.defn(name="apprenticeship_program")
    def program(self, request: ProgramRequest) -> Program:
        """The program of the pinned pack version."""
        program = self._pack(request.pack_hash).program(request.program_id)
        if program is None:
            raise ApplicationError(
                f"program {request.program_id!r} is not in pack {request.pack_hash[:12]}",
                non_retryable=True,
            )
        return program

    @activity.defn(name="decide_apprenticeship")
    def decide(self, request: DecideApprenticeship) -> Decision | None:
        """The status under the pinned pack's rules, through durable_rules like every kind.

        Returns:
            The decision (status, rule, pack hash, facts), or None when no status rule of the
            pack reads a program fact: a pack written before programs had rules (or one
            without programs) leaves the workflow's built-in answer in place.
        """
        pack = self._pack(request.pack_hash)
        program_facts = KIND_FACTS["apprenticeship"]
        if not any(program_facts & rule.condition.facts_used for rule in pack.status_rules):
            return None
        with self._db.session() as session:
            person = session.scalar(select(Person).where(Person.external_id == request.person))
            if person is None:
                raise ApplicationError(
                    f"person {request.person!r} is not in the directory", non_retryable=True
                )
            attributes = person_attributes(person).model_dump()
        try:
            return engine_for(pack).evaluate(complete_facts({**attributes, **request.facts}))
        except (NoRuleMatched, FactsError) as error:
            # The pack is broken for these facts; retrying cannot fix it. Lint prevents it.
            raise ApplicationError(str(error), non_retryable=True) from error

    @activity.defn(name="apprenticeship_notice")
    def notice(self, request: NoticeRequest) -> list[str]:
        """Tell each recipient role on each channel, exactly once; one line per send."""
        pack = self._pack(request.pack_hash)
        program = pack.program(request.program_id)
        lines: list[str] = []
        with self._db.session() as session:
            person = session.scalar(select(Person).where(Person.external_id == request.person))
            if person is None:
                raise ApplicationError(
                    f"person {request.person!r} is not in the directory", non_retryable=True
                )
            supervisor = session.scalar(
                select(Person).where(Person.external_id == request.supervisor)
            )
            recipients: list[Recipient] = []
            for role in request.notify:
                found: Recipient | None = None
                if role == "apprentice":
                    found = person_recipient(role, person)
                elif role == "supervisor" and supervisor is not None:
                    if supervisor.employment_status == "terminated":
                        # Gone: the supervisor_left flag has HR transfer the apprenticeship.
                        lines.append(f"{role}: {supervisor.external_id} has left")
                        continue
                    found = person_recipient(role, supervisor)
                elif role == "supervisors_manager" and supervisor and supervisor.manager:
                    # A manager who left (or is on leave) is passed over for the next one up.
                    found, _ = up_the_chain(role, supervisor.manager)
                elif role == "sponsor" and program is not None:
                    contact = program.sponsor.contact
                    found = Recipient(role, f"mailbox:{contact}", None, email=contact)
                elif role == "hr" and pack.info.contacts and pack.info.contacts.hr_mailbox:
                    mailbox = pack.info.contacts.hr_mailbox
                    found = Recipient(role, f"mailbox:{mailbox}", None, email=mailbox)
                if found is None:
                    lines.append(f"{role}: nobody to notify")
                elif all(r.key != found.key for r in recipients):
                    recipients.append(found)
        step = Step(
            workflow_id=request.workflow_id,
            pack_hash=request.pack_hash,
            stage=request.key,
            kind=APPRENTICESHIP_KIND,
            fired_at=request.fired_at,
        )

        def render(channel: str, notification_id: int) -> Rendered:
            return Rendered(subject=request.subject, text=request.text)

        for recipient in recipients:
            for outcome in self._deliverer.deliver(step, recipient, request.channels, render):
                lines.append(f"{recipient.role} {outcome.channel} {outcome.status}")
        return lines

    @activity.defn(name="record_apprenticeship")
    def record(self, request: RecordApprenticeship) -> None:
        """Upsert the enrolment row and its obligation row; older updates never win."""
        state = request.state
        with self._db.session() as session:
            person = session.scalar(select(Person).where(Person.external_id == state.person))
            if person is None:
                raise ApplicationError(
                    f"person {state.person!r} is not in the directory", non_retryable=True
                )
            row = session.scalar(
                select(Apprenticeship).where(Apprenticeship.workflow_id == request.workflow_id)
            )
            if row is None:
                row = Apprenticeship(workflow_id=request.workflow_id, person_id=person.id)
                session.add(row)
            elif row.as_of > request.as_of:
                return
            row.program_id = state.program_id
            row.program_name = request.program_name
            row.pack_hash = state.pack_hash
            row.supervisor = state.supervisor
            row.status = state.status.value
            row.compliance_status = state.compliance_status
            row.decided_by = state.decided_by
            row.period = state.period
            row.wage_percentage = state.wage_percentage
            row.enrolled_on = state.enrolled_on
            row.expected_completion = state.expected_completion
            row.completed_on = state.completed_on
            row.work_approved = state.work_approved
            row.classroom_approved = state.classroom_approved
            row.summary = state.model_dump(mode="json", exclude={"entries", "events"})
            row.as_of = request.as_of
            obligation = session.scalar(
                select(Obligation).where(Obligation.workflow_id == request.workflow_id)
            )
            if obligation is None:
                obligation = Obligation(workflow_id=request.workflow_id, person_id=person.id)
                session.add(obligation)
            obligation.kind = APPRENTICESHIP_KIND
            obligation.requirement_id = state.program_id
            obligation.requirement_title = request.program_name
            obligation.cycle = state.period
            obligation.due_date = state.expected_completion
            obligation.stage = f"p{state.period}"
            obligation.status = (
                "completed"
                if state.status.value == "completed"
                else state.compliance_status
                if state.status.value == "active"
                else state.status.value
            )
            obligation.pack_hash = state.pack_hash
            obligation.completed_at = (
                datetime.combine(state.completed_on, datetime.min.time(), UTC)
                if state.completed_on
                else None
            )
            # The workflow holds this status itself (pure progress maths): the sweep leaves it.
            obligation.suspended = True
            obligation.as_of = request.as_of

    @activity.defn(name="record_apprenticeship_entry")
    def record_entry(self, request: RecordEntry) -> None:
        """Insert or update one hours entry's row (by workflow and entry id)."""
        entry = request.entry
        with self._db.session() as session:
            row = session.scalar(
                select(ApprenticeshipHours)
                .where(ApprenticeshipHours.workflow_id == request.workflow_id)
                .where(ApprenticeshipHours.entry_id == entry.id)
            )
            if row is None:
                row = ApprenticeshipHours(
                    workflow_id=request.workflow_id,
                    entry_id=entry.id,
                    logged_by=request.logged_by,
                    source=request.source,
                    corrects=request.corrects,
                    reason=request.reason,
                )
                session.add(row)
            row.day = entry.day
            row.kind = entry.kind.value
            row.hours = entry.hours
            row.status = entry.status.value
            row.skills = list(entry.skills)
            row.description = entry.description
            if request.reviewed_by is not None:
                row.reviewed_by = request.reviewed_by
                row.review_reason = request.review_reason
                row.reviewed_at = request.reviewed_at

    @activity.defn(name="record_apprenticeship_evaluation")
    def record_evaluation(self, request: RecordEvaluation) -> None:
        """Insert one evaluation's row (a retry finds it there)."""
        with self._db.session() as session:
            found = session.scalar(
                select(ApprenticeshipEvaluation)
                .where(ApprenticeshipEvaluation.workflow_id == request.workflow_id)
                .where(ApprenticeshipEvaluation.evaluation_id == request.evaluation_id)
            )
            if found is not None:
                return
            evaluation = request.evaluation
            session.add(
                ApprenticeshipEvaluation(
                    workflow_id=request.workflow_id,
                    evaluation_id=request.evaluation_id,
                    day=evaluation.day,
                    score=evaluation.score,
                    skills_signed_off=list(evaluation.skills_signed_off),
                    notes=request.notes,
                    final=evaluation.final,
                    evaluator=request.evaluator,
                )
            )

    @activity.defn(name="apprenticeship_certifications_held")
    def certifications_held(self, person: str) -> list[str]:
        """Certification ids the person holds with a valid certificate."""
        with self._db.session() as session:
            rows = session.scalars(
                select(Certificate.certification_id)
                .join(Person, Person.id == Certificate.person_id)
                .where(Person.external_id == person)
                .where(Certificate.status.notin_(NOT_HELD))
            )
            return sorted(set(rows))

    @activity.defn(name="apprenticeship_register_awards")
    async def register_awards(self, request: AwardRequest) -> list[str]:
        """Register each awarded certification (its workflow and verification code)."""
        if self._register_awards is None:
            raise ApplicationError("no award registrar is configured", non_retryable=True)
        return await self._register_awards(request, activity.info().task_queue)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity callable, for the worker."""
        return [
            self.program,
            self.decide,
            self.notice,
            self.record,
            self.record_entry,
            self.record_evaluation,
            self.certifications_held,
            self.register_awards,
        ]
