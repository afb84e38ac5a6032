"""The reminder ladder every obligation family's workflow composes.

A family's workflow (assignments, certifications, and the families after them) owns its
messages, its status and its own moments (an exemption lapsing, a renewal window opening);
:class:`Ladder` owns what they all share:

- the stages and which of them went out (``stages``, ``sent``, ``stage``);
- sleeping until an instant while handling what arrives meanwhile (:meth:`Ladder.sleep_until`):
  a time-zone change re-plans, a changed fact is recorded, a bounced message is re-sent, an
  exemption or suspension re-plans;
- sending a stage through the ``send_reminder`` activity, and sending it again when recipients
  were in quiet hours (:meth:`Ladder.send`), or when a message bounced (:meth:`Ladder.resend`);
- the activity calls every family makes (``plan_stages``, ``decide_status``,
  ``record_obligation``) with one timeout and retry policy;
- the readable timeline (:meth:`Ladder.event`).

A new family's workflow holds a ``Ladder`` (``self._ladder = Ladder(self, event_type=...)``),
implements :class:`LadderFamily` (when it is closed, how it records its status, what a reminder
for one of its stages says, how it re-plans in a new zone, and any messages of its own), and
subclasses ``domain.contracts.obligation.ObligationMessages`` so senders reach it without string
names. Its ``run`` walks its own moments and calls :meth:`Ladder.sleep_until` and
:meth:`Ladder.send`.

The family answers through :class:`LadderFamily`. The runner issues exactly the commands the
two families issued before it existed, in the same order (the recorded histories in
``tests/workflows/histories`` replay unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from enum import Enum
from typing import Generic, Protocol, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.assignment import ObligationActivities
    from activities.rules import RulesActivities
    from domain.calendar import LadderStage
    from domain.contracts import obligation as obligation_contract
    from domain.contracts.obligation import (
        NOTED_REPEATS,
        DecideRequest,
        LadderEvent,
        ObligationUpdate,
        PlanRequest,
        RedeliverSignal,
        ReminderRequest,
        ReminderResult,
        ReplanSignal,
        StagePlan,
    )
    from rules.engine import Decision

ACTIVITY_TIMEOUT = timedelta(seconds=30)
#: Workflows started with this patch plan every instant through ``plan_stages`` in the
#: person's IANA zone (DST-correct); histories recorded before it keep one fixed UTC offset.
ZONE_PLANNING_PATCH = "zone-aware-planning"
# Store and outbox failures are transient (database restart, lock timeout): retry with backoff
# for a long time rather than lose a reminder; permanent ones are raised non-retryable.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))

EventT = TypeVar("EventT", bound=LadderEvent)


class Wake(Enum):
    """Why :meth:`Ladder.sleep_until` returned (``AGAIN`` only passes between hooks)."""

    DEADLINE = "deadline"
    DONE = "done"
    REPLANNED = "replanned"
    #: A family hook handled something; look at everything again before sleeping.
    AGAIN = "again"


class LadderFamily(Protocol):
    """What a family's workflow tells the runner."""

    def closed(self) -> bool:
        """The obligation is over (completed, cancelled, renewed, revoked): stop waiting."""
        ...

    async def record(self) -> None:
        """Decide the status and write the read models."""
        ...

    def reminder(
        self, stage: LadderStage, *, late_notice: bool, event: str | None
    ) -> ReminderRequest:
        """The ``send_reminder`` request for ``stage`` (``event``: a status notice)."""
        ...

    async def replan_zone(self, signal: ReplanSignal) -> None:
        """The person's time zone changed: plan what has not happened yet again."""
        ...

    async def interrupt(self) -> Wake | None:
        """The family's own messages, checked before the shared ones.

        Returns:
            None when there was nothing, :attr:`Wake.AGAIN` when something was handled and the
            runner should look again, or the :class:`Wake` to return from the sleep.
        """
        ...

    async def at_deadline(self) -> Wake | None:
        """The deadline passed: the family may act first (None: return ``DEADLINE``)."""
        ...

    def waiting(self) -> bool:
        """The family's own wake-up condition (a message :meth:`interrupt` handles)."""
        ...


class Ladder(Generic[EventT]):
    """The shared ladder state and loop; one per workflow run.

    Args:
        family: The workflow composing the runner.
        event_type: The family's timeline event type.
        stages: The stages planned so far (re-planned by the family as it learns more).
        offset: The UTC offset (minutes) to plan with until the person's zone is known.
        deferral_survives_replan: When a quiet-hours deferral is interrupted by a re-plan,
            send again at once (True: assignments) or give up the deferred send (False:
            certifications). Kept per family because their histories differ.
        silent_delivery: The timeline detail after the stage label when ``send_reminder``
            reports no delivery (``{status}`` is its status); None: the empty list.
        continue_as_new: Called (it raises, ending the run) when the history has grown long
            (:meth:`history_full`) and the ladder is idle: the family continues as new carrying
            its state. None: the family's runs are bounded otherwise.
    """

    def __init__(
        self,
        family: LadderFamily,
        *,
        event_type: type[EventT],
        stages: list[LadderStage],
        offset: int,
        deferral_survives_replan: bool,
        silent_delivery: str | None = None,
        continue_as_new: Callable[[], None] | None = None,
    ) -> None:
        self._family = family
        self._continue_as_new = continue_as_new
        #: Quiet-hours deferrals waiting (their re-sends belong to this run).
        self._deferring = 0
        self._event_type = event_type
        self._deferral_survives_replan = deferral_survives_replan
        self._silent_delivery = silent_delivery
        self.stages = stages
        self.offset = offset
        #: The person's IANA zone once ``plan_stages`` planned in it.
        self.zone: str | None = None
        self.sent: list[str] = []
        #: The last ladder stage sent.
        self.stage: str | None = None
        #: When the person last heard from us (not the stage's nominal time).
        self.last_sent_at: datetime | None = None
        self.events: list[EventT] = []
        self.redeliver: list[RedeliverSignal] = []
        self.zone_change: ReplanSignal | None = None
        #: A fact changed: record at the next wake-up.
        self.dirty = False
        #: The plan changed (exemption, suspension, extension): the loop looks again.
        self.replanned = False
        #: How many times each repeatable message kind arrived (see :meth:`note`).
        self.repeats: dict[str, int] = {}

    # -- timeline ---------------------------------------------------------------------------

    def event(self, kind: str, detail: str) -> None:
        """Add one line to the workflow's readable timeline."""
        self.events.append(self._event_type(at=workflow.now(), kind=kind, detail=detail))

    def note(self, kind: str, detail: str) -> int:
        """A timeline line for a message a client may send any number of times.

        The first :data:`~domain.contracts.obligation.NOTED_REPEATS` of ``kind`` are listed, then
        one line says the rest are only counted: a flood of failed attempts or ignored completions
        cannot grow the workflow's state (and every ``state`` answer) without bound.

        Returns:
            How many of ``kind`` arrived so far, this one included.
        """
        seen = self.repeats.get(kind, 0) + 1
        self.repeats[kind] = seen
        if seen <= NOTED_REPEATS:
            self.event(kind, detail)
        elif seen == NOTED_REPEATS + 1:
            self.event(
                "repeats_counted",
                f"more than {NOTED_REPEATS} {kind} lines: further ones are counted, not listed",
            )
        return seen

    def history_full(self) -> bool:
        """The run should continue as new: its history is long and nothing is in progress.

        Long: :data:`~domain.contracts.obligation.HISTORY_LIMIT` events, or the server suggests
        it. Never while a deferred send waits or a handler (an update) is still running.
        """
        if self._continue_as_new is None or self._deferring:
            return False
        info = workflow.info()
        long = (
            info.get_current_history_length() >= obligation_contract.HISTORY_LIMIT
            or info.is_continue_as_new_suggested()
        )
        return long and workflow.all_handlers_finished()

    def count(self, kind: str) -> int:
        """How many timeline lines of ``kind`` there are."""
        return sum(1 for e in self.events if e.kind == kind)

    # -- stages -----------------------------------------------------------------------------

    def unsent_after(self, now: datetime) -> list[LadderStage]:
        """The stages still to send that fall after ``now``, in order."""
        return [s for s in self.stages if s.fire_at > now and s.label not in self.sent]

    def apply_zone_plan(self, plan: StagePlan) -> bool:
        """Take the stages, zone and offset of a plan made in the person's zone.

        Returns:
            False (nothing taken) for a plan recorded before zone-aware planning.
        """
        if plan.stages is None or plan.due_at is None:
            return False
        self.zone = plan.time_zone
        self.stages = list(plan.stages)
        if plan.utc_offset_minutes is not None:
            self.offset = plan.utc_offset_minutes
        return True

    def queue_redelivery(self, signal: RedeliverSignal) -> None:
        """A sent stage bounced: re-send it at the next wake-up."""
        self.redeliver.append(signal)
        self.event("delivery_failed", f"{signal.stage}: {signal.reason or 'permanent failure'}")

    # -- waiting ----------------------------------------------------------------------------

    async def sleep_until(self, deadline: datetime | None) -> Wake:
        """Sleep until ``deadline`` (None: forever) while handling what arrives meanwhile.

        Returns:
            Why it returned: the deadline passed, the obligation closed, or it re-planned.
        """
        family = self._family
        while True:
            if family.closed():
                return Wake.DONE
            wake = await family.interrupt()
            if wake is Wake.AGAIN:
                continue
            if wake is not None:
                return wake
            if self.zone_change is not None:
                signal, self.zone_change = self.zone_change, None
                await family.replan_zone(signal)
                return Wake.REPLANNED
            if self.dirty:
                self.dirty = False
                await family.record()
                continue
            if self.redeliver:
                await self.resend(self.redeliver.pop(0))
                continue
            if self.replanned:
                self.replanned = False
                return Wake.REPLANNED
            if self._continue_as_new is not None and self.history_full():
                # Everything that arrived is handled and nothing is in flight: carry on in a
                # new run (this raises), so no flood of signals can reach the history limit.
                self._continue_as_new()
            timeout = None if deadline is None else deadline - workflow.now()
            if timeout is not None and timeout <= timedelta(0):
                return await family.at_deadline() or Wake.DEADLINE
            try:
                await workflow.wait_condition(
                    lambda: (
                        family.closed()
                        or self.dirty
                        or self.replanned
                        or bool(self.redeliver)
                        or self.zone_change is not None
                        or family.waiting()
                        or self.history_full()
                    ),
                    timeout=timeout,
                )
            except TimeoutError:
                continue

    # -- sending ----------------------------------------------------------------------------

    async def catch_up(self, past: list[LadderStage], *, before: str) -> None:
        """Started late: one notice for the stage we are in, not one per missed stage."""
        await self.send(past[-1], late_notice=True)
        for skipped in past[:-1]:
            self.event("stage_skipped", f"{skipped.label} was before the {before}")

    async def send(
        self, stage: LadderStage, *, late_notice: bool = False, event: str | None = None
    ) -> None:
        """Send a ladder stage (or, with ``event``, a status notice) and record it.

        Recipients in quiet hours (or a weekend under a business-days policy) get the stage
        later, never not at all: it runs again then; the ledger skips what already went out.
        """
        notice = event is not None
        if not notice:
            self.stage = stage.label
        result = await self.deliver(
            self._family.reminder(stage, late_notice=late_notice, event=event)
        )
        if not notice:
            self.sent.append(stage.label)
            # A late notice sent now already covers every stage that fell due before now.
            self.last_sent_at = workflow.now()
        if result.deliveries or self._silent_delivery is None:
            self.event("reminder_sent", f"{stage.label}: " + "; ".join(result.deliveries))
        else:
            detail = self._silent_delivery.format(status=result.status)
            self.event("reminder_sent", f"{stage.label} {detail}")
        if not notice:
            await self._family.record()
        while result.deferred_until is not None:
            self._deferring += 1
            try:
                wake = await self.sleep_until(result.deferred_until)
            finally:
                self._deferring -= 1
            if wake is Wake.DONE or (wake is Wake.REPLANNED and not self._deferral_survives_replan):
                return
            result = await self.deliver(
                self._family.reminder(stage, late_notice=late_notice, event=event)
            )
            self.event(
                "reminder_sent", f"{stage.label} (deferred): " + "; ".join(result.deliveries)
            )

    async def resend(self, signal: RedeliverSignal) -> None:
        """Run a sent stage again: sent parts are ledger no-ops, the failed one falls back."""
        stage = next((s for s in self.stages if s.label == signal.stage), None)
        if stage is None:
            return
        result = await self.deliver(self._family.reminder(stage, late_notice=False, event=None))
        self.event("redelivered", f"{stage.label}: " + "; ".join(result.deliveries))

    # -- activities -------------------------------------------------------------------------

    async def deliver(self, request: ReminderRequest) -> ReminderResult:
        """Run ``send_reminder`` (recipients, channels, ledger, quiet hours are its business)."""
        return await workflow.execute_activity_method(
            ObligationActivities.send_reminder,
            request,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )

    async def plan(self, request: PlanRequest) -> StagePlan:
        """Run ``plan_stages``: the pinned pack's ladder and instants in the person's zone."""
        return await workflow.execute_activity_method(
            RulesActivities.plan_stages,
            request,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )

    def trigger(self) -> str | None:
        """The latest timeline event that is not itself a status line: what led to a decision.

        Recorded with each decision (``decisions.trigger``) so an as-of answer says why.
        """
        for event in reversed(self.events):
            if event.kind != "status":
                return f"{event.kind}: {event.detail}"[:300]
        return None

    async def decide(self, request: DecideRequest) -> Decision:
        """Run ``decide_status``: the status under the pinned pack's rules."""
        if request.trigger is None:
            request = request.model_copy(update={"trigger": self.trigger()})
        return await workflow.execute_activity_method(
            RulesActivities.decide_status,
            request,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )

    async def record_obligation(self, update: ObligationUpdate) -> None:
        """Run ``record_obligation``: write the obligation's read model."""
        if update.trigger is None:
            update = update.model_copy(update={"trigger": self.trigger()})
        await workflow.execute_activity_method(
            ObligationActivities.record_obligation,
            update,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )


async def deliver_notice(request: ReminderRequest, *, max_deferrals: int) -> list[str]:
    """Send a one-off notice outside any ladder; again when quiet hours end.

    For workflows that only tell someone something once (a track's completion): the same
    ``send_reminder`` as a ladder stage (recipients, channels, the ledger's exactly-once key,
    quiet hours). A deferral sleeps until the recipient's quiet hours end and sends then;
    after ``max_deferrals`` postponements it is given up (logged). Returns the deliveries.
    """
    deliveries: list[str] = []
    for _ in range(max_deferrals):
        result: ReminderResult = await workflow.execute_activity_method(
            ObligationActivities.send_reminder,
            request,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        deliveries += result.deliveries
        if result.deferred_until is None:
            return deliveries
        await workflow.sleep(max(result.deferred_until - workflow.now(), timedelta(seconds=1)))
    workflow.logger.warning("notice %s postponed too often; given up", request.stage)
    return deliveries
