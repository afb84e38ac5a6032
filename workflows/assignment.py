"""AssignmentWorkflow: one training obligation of one person, from assignment to completion."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.assignment import AssignmentActivities
    from duly.domain import (
        AcknowledgeSignal,
        AssignmentEvent,
        AssignmentInput,
        AssignmentState,
        CompleteSignal,
        LadderStage,
        ObligationKind,
        ObligationUpdate,
        ReminderRequest,
        due_instant,
        plan_ladder,
    )
    from rules.builtin import StatusDecision, builtin_status

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Store and outbox failures are transient (database restart, lock timeout): retry with backoff
# for a long time rather than lose a reminder; permanent ones are raised non-retryable.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))


@workflow.defn
class AssignmentWorkflow:
    """Carries one training assignment.

    Sends the learner a reminder at each stage of the 90/60/30/14/7/0-day ladder (an assignment
    created late gets one immediate notice for the current stage instead of a burst of past
    ones), turns overdue at the end of the due day, and finishes when completion evidence
    arrives. Signals: ``complete``, ``acknowledge``. Query: ``state``.
    """

    @workflow.init
    def __init__(self, input: AssignmentInput) -> None:
        self._input = input
        self._stages: list[LadderStage] = plan_ladder(input.due_date, input.utc_offset_minutes)
        self._due_at: datetime = due_instant(input.due_date, input.utc_offset_minutes)
        self._sent: list[str] = []
        self._stage: str | None = None
        self._completion: CompleteSignal | None = None
        self._acknowledgement: AcknowledgeSignal | None = None
        self._events: list[AssignmentEvent] = []
        self._decision: StatusDecision | None = None
        self._dirty = False

    # -- messages -------------------------------------------------------------------------

    @workflow.signal
    def complete(self, signal: CompleteSignal) -> None:
        """Accept completion evidence (the first one wins; later ones are noted and ignored)."""
        if self._completion is not None:
            self._event(
                "completion_ignored", f"already completed; {signal.source} by {signal.actor}"
            )
            return
        self._completion = signal
        self._event("completed", f"{signal.source} by {signal.actor} at {signal.completed_at}")

    @workflow.signal
    def acknowledge(self, signal: AcknowledgeSignal) -> None:
        """Record that the learner acknowledged the reminders (first acknowledgement kept)."""
        if self._acknowledgement is not None or self._completion is not None:
            return
        self._acknowledgement = signal
        self._dirty = True
        self._event("acknowledged", f"by {signal.actor} via {signal.channel}")

    @workflow.query
    def state(self) -> AssignmentState:
        """The assignment as the workflow sees it now."""
        return AssignmentState(
            workflow_id=workflow.info().workflow_id,
            person=self._input.person,
            requirement_id=self._input.requirement_id,
            requirement_title=self._input.requirement_title,
            cycle=self._input.cycle,
            due_date=self._input.due_date,
            status=self._current_decision().status,
            stage=self._stage,
            stages=self._stages,
            stages_sent=list(self._sent),
            acknowledged_at=self._acknowledgement.acknowledged_at
            if self._acknowledgement
            else None,
            completed_at=self._completion.completed_at if self._completion else None,
            pack_hash=self._input.pack_hash,
            events=list(self._events),
        )

    # -- main -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: AssignmentInput) -> AssignmentState:
        """Walk the ladder, then wait for completion."""
        now = workflow.now()
        self._event("assigned", f"by {input.assigned_by}, due {input.due_date.isoformat()}")
        await self._record()

        past = [s for s in self._stages if s.fire_at <= now]
        upcoming = [s for s in self._stages if s.fire_at > now]
        if past and self._completion is None:
            # Created late: one notice for the stage we are in, not one per missed stage.
            await self._send(past[-1], late_notice=True)
            for skipped in past[:-1]:
                self._event("stage_skipped", f"{skipped.label} was before the assignment")

        for stage in upcoming:
            if not await self._sleep_until(stage.fire_at):
                break
            await self._send(stage)

        if self._completion is None and await self._sleep_until(self._due_at):
            self._event("overdue", f"not completed by the end of {input.due_date.isoformat()}")
            await self._record()

        while self._completion is None:
            await self._sleep_until(None)

        await self._record()
        return self.state()

    # -- helpers --------------------------------------------------------------------------

    async def _sleep_until(self, deadline: datetime | None) -> bool:
        """Sleep until ``deadline`` (None: forever), keeping the read model fresh meanwhile.

        Returns:
            True when the deadline passed, False when the assignment completed first.
        """
        while True:
            if self._completion is not None:
                return False
            if self._dirty:
                self._dirty = False
                await self._record()
                continue
            timeout = None if deadline is None else deadline - workflow.now()
            if timeout is not None and timeout <= timedelta(0):
                return True
            try:
                await workflow.wait_condition(
                    lambda: self._completion is not None or self._dirty, timeout=timeout
                )
            except TimeoutError:
                return True

    def _days_left(self) -> int:
        """Whole days from the learner's local today to the due date (negative when overdue)."""
        local_now = workflow.now() + timedelta(minutes=self._input.utc_offset_minutes)
        return (self._input.due_date - local_now.date()).days

    async def _send(self, stage: LadderStage, *, late_notice: bool = False) -> None:
        self._stage = stage.label
        result = await workflow.execute_activity_method(
            AssignmentActivities.send_reminder,
            ReminderRequest(
                workflow_id=workflow.info().workflow_id,
                person=self._input.person,
                kind=ObligationKind.TRAINING,
                requirement_title=self._input.requirement_title,
                due_date=self._input.due_date,
                stage=stage.label,
                # The real days left, not the stage's offset: a late notice for a stage of
                # -7d may go out with 3 days left, and the learner must read "3 days".
                days_before_due=self._days_left(),
                pack_hash=self._input.pack_hash,
                fired_at=workflow.now(),
                late_notice=late_notice,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        self._sent.append(stage.label)
        self._event("reminder_sent", f"{stage.label} to learner by email ({result.status})")
        await self._record()

    def _current_decision(self) -> StatusDecision:
        return builtin_status(
            now=workflow.now(), due_at=self._due_at, completed=self._completion is not None
        )

    async def _record(self) -> None:
        decision = self._current_decision()
        if self._decision is None or decision.status != self._decision.status:
            self._event("status", f"{decision.status.value} (rule {decision.rule})")
        self._decision = decision
        await workflow.execute_activity_method(
            AssignmentActivities.record_obligation,
            ObligationUpdate(
                workflow_id=workflow.info().workflow_id,
                person=self._input.person,
                kind=ObligationKind.TRAINING,
                requirement_id=self._input.requirement_id,
                requirement_title=self._input.requirement_title,
                cycle=self._input.cycle,
                due_date=self._input.due_date,
                stage=self._stage,
                status=decision.status,
                pack_hash=self._input.pack_hash,
                acknowledged_at=(
                    self._acknowledgement.acknowledged_at if self._acknowledgement else None
                ),
                completed_at=self._completion.completed_at if self._completion else None,
                as_of=workflow.now(),
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )

    def _event(self, kind: str, detail: str) -> None:
        self._events.append(AssignmentEvent(at=workflow.now(), kind=kind, detail=detail))
