"""CertificationWorkflow: one certification a person holds, cycle after cycle, for years.

One workflow id per (person, certification) — ``certification/{person}/{certification}``. Each
cycle (issued → expiring → renewed) is one run; a renewal closes the cycle and continues as new,
carrying a one-line record of every past cycle, so a run's history stays bounded however many
years the certification lives while every cycle stays answerable (``state().history``, and each
past run's full history under its ``run_id``).

The ladder is the assignment ladder, counted from the expiry date: the stages come from the
requirement's escalation policy in the pinned pack (``plan_stages``), reminders go through the
same ``send_reminder`` activity (recipients resolved at send time, exactly-once ledger, digests,
quiet hours), and every status is decided by the pack's rules (``decide_status``) at the exact
instants it can change: when the renewal window opens, at the end of the expiry day, and at
the end of the grace period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.certification import CertificationActivities
    from domain.calendar import DEFAULT_LADDER_DAYS, LadderStage, due_instant, plan_ladder
    from domain.contracts.assignment import CancelSignal
    from domain.contracts.certification import (
        CE_CREDIT_ENTRIES_PER_CYCLE,
        CeCredit,
        CertificateUpdate,
        CertificationEvent,
        CertificationInput,
        CertificationState,
        CertificationStatus,
        ClosedCycle,
        ReinstateCertification,
        RenewCertification,
        RevokeCertification,
        SuspendCertification,
        ce_credits_short,
        ce_shortfall,
        renewal_date_problem,
    )
    from domain.contracts.obligation import (
        AcknowledgeSignal,
        DecideRequest,
        ObligationFacts,
        ObligationMessages,
        ObligationUpdate,
        PlanRequest,
        RedeliverSignal,
        ReminderRequest,
        ReplanSignal,
        StagePlan,
    )
    from domain.contracts.packs import AdoptPackSignal
    from domain.ids import BUILTIN_PACK
    from domain.kinds import ObligationKind

from workflows.ladder import ACTIVITY_TIMEOUT, RETRY, ZONE_PLANNING_PATCH, Ladder, Wake

#: Who hears about a suspension, reinstatement, revocation or the end of grace, and how.
NOTICE_ROLES = ["learner", "manager"]
NOTICE_CHANNELS = ["email", "in_app"]


@dataclass(frozen=True)
class _Mark:
    """A moment the workflow acts at: a ladder stage, or a status transition."""

    at: datetime
    kind: str  # "stage", "window", "expired", "grace_ended"
    stage: LadderStage | None = None


def _key(mark: _Mark) -> tuple[str, str | None]:
    """A mark's identity across re-plans (its instant may move)."""
    return mark.kind, mark.stage.label if mark.stage is not None else None


def renewal_outcome(today: date, expires_on: date, window_days: int | None, grace: int) -> str:
    """How a renewal on ``today`` relates to the cycle: early, in the window, in grace, late."""
    if window_days is not None and today < expires_on - timedelta(days=window_days):
        return "renewed_early"
    if today <= expires_on:
        return "renewed_in_window"
    if today <= expires_on + timedelta(days=grace):
        return "renewed_in_grace"
    return "renewed_after_grace"


@workflow.defn
class CertificationWorkflow(ObligationMessages):
    """Carries one held certification through its expiry ladder and its renewals.

    Updates (the caller needs an answer): ``renew``, ``log_ce_credits``. Signals: ``suspend``,
    ``reinstate``, ``revoke``, ``cancel`` (the holder left: Duly stops tracking it),
    ``acknowledge``, ``redeliver``, ``adopt_pack``. Query: ``state``.
    """

    @workflow.init
    def __init__(self, input: CertificationInput) -> None:
        self._input = input
        self._cert = input.certificate
        self._pack_hash = input.pack_hash
        self._next_pack: str | None = None
        self._days_before: tuple[int, ...] = DEFAULT_LADDER_DAYS
        # Instants planned in the holder's zone by ``plan_stages`` (until then, and for
        # histories from before zone-aware planning, the input's offset).
        self._ladder = Ladder(
            self,
            event_type=CertificationEvent,
            stages=plan_ladder(self._cert.expires_on, input.utc_offset_minutes),
            offset=input.utc_offset_minutes,
            deferral_survives_replan=False,
        )
        # Empty but for a restart, which carries the cycle's credits (services.restarts).
        self._credits: list[CeCredit] = list(input.ce_credits)
        self._required = 0.0
        self._window_days: int | None = None
        self._grace_days = 0
        self._status = "registered"
        self._acknowledged: AcknowledgeSignal | None = None
        self._suspended: SuspendCertification | None = None
        self._revoked: RevokeCertification | None = None
        #: The holder left (the directory automation): terminal, nobody is told.
        self._cancelled: CancelSignal | None = None
        self._renewal: tuple[RenewCertification, ClosedCycle] | None = None
        self._notices: list[tuple[str, str]] = []  # (event, detail) waiting to be sent
        #: The pack's plan (CE credits, window, grace) is known: updates wait for it.
        self._planned = False
        self._expires_at: datetime | None = None
        self._window_at: datetime | None = None
        self._grace_at: datetime | None = None
        self._remark = False

    # -- messages -------------------------------------------------------------------------

    @workflow.update
    async def renew(self, request: RenewCertification) -> ClosedCycle:
        """Close this cycle with a renewed certificate; the workflow continues as new for it."""
        await workflow.wait_condition(lambda: self._planned)
        shortfall = self._shortfall()
        if shortfall is not None:
            # Checked again here: an update that arrived before the plan passed the validator.
            raise ApplicationError(shortfall, type="CeCreditsShort")
        today = self._today()
        outcome = renewal_outcome(today, self._cert.expires_on, self._window_days, self._grace_days)
        closed = ClosedCycle(
            certificate=self._cert,
            outcome=outcome,
            closed_on=today,
            ce_credits_logged=self._logged(),
            last_status=self._current_status(),
            run_id=workflow.info().run_id,
        )
        self._renewal = (request, closed)
        new = request.certificate
        self._event(
            "renewed",
            f"{outcome.replace('_', ' ')} by {request.actor}: cycle {new.cycle} issued"
            f" {new.issued_on.isoformat()}, expires {new.expires_on.isoformat()}",
        )
        return closed

    @renew.validator
    def _validate_renewal(self, request: RenewCertification) -> None:
        self._refuse_if_closed()
        new = request.certificate
        if new.cycle != self._cert.cycle + 1:
            raise ValueError(
                f"the renewal must be cycle {self._cert.cycle + 1} (this is cycle"
                f" {self._cert.cycle}); got {new.cycle}"
            )
        problem = renewal_date_problem(
            self._cert, issued_on=new.issued_on, expires_on=new.expires_on
        )
        if problem is not None:
            raise ValueError(problem)
        shortfall = self._shortfall()
        if shortfall is not None:
            raise ValueError(shortfall)

    def _shortfall(self) -> str | None:
        return ce_shortfall(self._required, self._logged())

    @workflow.update
    async def log_ce_credits(self, credit: CeCredit) -> CertificationState:
        """Count continuing-education credits towards this cycle's renewal."""
        await workflow.wait_condition(lambda: self._planned)
        if len(self._credits) >= CE_CREDIT_ENTRIES_PER_CYCLE:
            # Accepted before the plan, with others that filled the cycle meanwhile.
            raise ApplicationError(
                f"this cycle already has {CE_CREDIT_ENTRIES_PER_CYCLE} CE credit entries",
                type="CeCreditEntries",
            )
        self._credits.append(credit)
        self._ladder.dirty = True
        self._event(
            "ce_credits",
            f"{credit.credits:g} for {credit.activity!r} on {credit.earned_on.isoformat()}"
            f" by {credit.actor} ({self._logged():g} of {self._required:g})",
        )
        return self.state()

    @log_ce_credits.validator
    def _validate_credit(self, credit: CeCredit) -> None:
        self._refuse_if_closed()
        if len(self._credits) >= CE_CREDIT_ENTRIES_PER_CYCLE:
            # Refused here, before acceptance: a refused update writes no history and does not
            # count towards Temporal's updates per run, so ``renew`` always still fits.
            raise ValueError(
                f"this cycle already has {len(self._credits)} CE credit entries, the most one"
                f" cycle keeps ({CE_CREDIT_ENTRIES_PER_CYCLE}); log the rest as fewer, larger"
                f" entries (one per course or provider, up to 1000 credits each)"
            )
        if credit.earned_on < self._cert.issued_on:
            raise ValueError(
                f"credits earned on {credit.earned_on.isoformat()} are before this cycle began"
                f" ({self._cert.issued_on.isoformat()}); only this cycle's credits count"
            )
        if credit.earned_on > self._today():
            raise ValueError(f"credits cannot be earned in the future ({credit.earned_on})")

    @workflow.signal
    def suspend(self, signal: SuspendCertification) -> None:
        """Pause the certification: reminders stop and the status is ``suspended``."""
        if self.closed() or self._suspended is not None:
            return
        self._suspended = signal
        self._ladder.replanned = True
        self._notices.append(("suspended", f"by {signal.actor}: {signal.reason}"))

    @workflow.signal
    def reinstate(self, signal: ReinstateCertification) -> None:
        """Lift a suspension; the ladder resumes from now (missed stages are not replayed)."""
        if self.closed() or self._suspended is None:
            return
        self._suspended = None
        self._ladder.replanned = True
        self._notices.append(("reinstated", f"by {signal.actor}: {signal.reason}"))

    @workflow.signal
    def revoke(self, signal: RevokeCertification) -> None:
        """Revoke the certification: terminal; the holder and manager are told."""
        if self.closed():
            return
        self._revoked = signal
        self._notices.append(("revoked", f"by {signal.actor}: {signal.reason}"))

    @workflow.signal
    def cancel(self, signal: CancelSignal) -> None:
        """Stop tracking the certification (the holder left): terminal, reminders stop.

        Not a revocation: the certificate was not withdrawn by its issuer, Duly just no longer
        follows it. Its status becomes ``cancelled`` (the reason in the timeline); a rehire
        owes it again and HR registers the certificate anew.
        """
        if self.closed():
            return
        self._cancelled = signal
        self._event("cancelled", f"by {signal.actor}: {signal.reason}")

    @workflow.signal
    def acknowledge(self, signal: AcknowledgeSignal) -> None:
        """The holder acknowledged a reminder (kept once per cycle)."""
        if self._acknowledged is None:
            self._acknowledged = signal
            self._event("acknowledged", f"by {signal.actor} via {signal.channel}")

    @workflow.signal
    def redeliver(self, signal: RedeliverSignal) -> None:
        """A sent stage bounced: send it again (the failed channel falls back)."""
        stage = signal.stage.split(":", 1)[-1]  # the ledger's "c2:-30d"
        if stage in self._ladder.sent and not self.closed():
            self._ladder.queue_redelivery(signal.model_copy(update={"stage": stage}))

    @workflow.signal
    def replan(self, signal: ReplanSignal) -> None:
        """The holder's time zone changed: re-plan what has not happened yet in the new zone."""
        if not self.closed():
            self._ladder.zone_change = signal

    @workflow.signal
    def adopt_pack(self, signal: AdoptPackSignal) -> None:
        """A newer pack was deployed: a certification takes it up at its next renewal."""
        if signal.pack_hash != self._pack_hash:
            self._next_pack = signal.pack_hash
            self._event("pack_deployed", f"{signal.pack_hash[:12]}: adopted at the next renewal")

    @workflow.query
    def state(self) -> CertificationState:
        """The certification as the workflow sees it now."""
        return CertificationState(
            workflow_id=workflow.info().workflow_id,
            person=self._input.person,
            certification_id=self._input.certification_id,
            title=self._input.title,
            cycle=self._cert.cycle,
            status=self._current_status(),
            certificate=self._cert,
            renewal_opens_on=(
                self._cert.expires_on - timedelta(days=self._window_days)
                if self._window_days is not None
                else None
            ),
            grace_ends_on=self._cert.expires_on + timedelta(days=self._grace_days),
            stage=self._ladder.stage,
            stages=self._ladder.stages,
            stages_sent=list(self._ladder.sent),
            ce_credits_required=self._required,
            ce_credits_logged=self._logged(),
            ce_credits=list(self._credits),
            history=list(self._input.history),
            pack_hash=self._pack_hash,
            events=list(self._ladder.events),
        )

    # -- main -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: CertificationInput) -> CertificationState:
        """Walk the expiry ladder until the certification is renewed or revoked."""
        ladder = self._ladder
        cert = self._cert
        self._event(
            "issued" if cert.cycle == 1 else "cycle_started",
            f"cycle {cert.cycle} by {input.registered_by}: issued {cert.issued_on.isoformat()},"
            f" expires {cert.expires_on.isoformat()}",
        )
        if self._pack_hash != BUILTIN_PACK or workflow.patched(ZONE_PLANNING_PATCH):
            await self._plan()
        self._planned = True
        await self.record()

        now = workflow.now()
        marks = self._marks()
        past_stages = [m.stage for m in marks if m.at <= now and m.stage is not None]
        pending = [m for m in marks if m.at > now]
        if past_stages and not self.closed():
            await ladder.catch_up(past_stages, before="registration")

        while not self.closed():
            if self._suspended is not None:
                await self._while_suspended()
                pending = [m for m in self._marks() if m.at > workflow.now()]
                continue
            if self._remark:
                # Re-planned in a new zone: what was still waiting but whose new instant has
                # passed happens now (one late notice for stages, never a burst); the rest
                # waits for its new instant.
                self._remark = False
                waiting = {_key(m) for m in pending}
                now = workflow.now()
                marks = self._marks()
                missed = [m for m in marks if m.at <= now and _key(m) in waiting]
                pending = [m for m in marks if m.at > now]
                stages = [m.stage for m in missed if m.stage is not None]
                if stages:
                    await ladder.send(stages[-1], late_notice=True)
                for mark in missed:
                    if mark.stage is None and not self.closed():
                        await self._transition(mark.kind)
                continue
            deadline = pending[0].at if pending else None
            if await ladder.sleep_until(deadline) is not Wake.DEADLINE:
                continue
            mark = pending.pop(0)
            if mark.stage is not None:
                await ladder.send(mark.stage)
            else:
                await self._transition(mark.kind)

        if self._revoked is not None:
            await self.record()
            await self._flush_notices()
            return self.state()
        if self._cancelled is not None:
            await self.record()
            return self.state()
        assert self._renewal is not None
        request, closed = self._renewal
        self._status = CertificationStatus.SUPERSEDED.value
        await self._record_certificate(CertificationStatus.SUPERSEDED.value)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            input.model_copy(
                update={
                    "certificate": request.certificate,
                    "history": [*input.history, closed],
                    "ce_credits": [],
                    "registered_by": request.actor,
                    "pack_hash": self._next_pack or self._pack_hash,
                }
            )
        )

    # -- the ladder's questions (workflows.ladder.LadderFamily) ---------------------------

    def closed(self) -> bool:
        """Revoked, cancelled, or being renewed: this cycle's ladder stops."""
        return self._revoked is not None or self._cancelled is not None or self._renewal is not None

    async def interrupt(self) -> Wake | None:
        """Status notices (suspended, reinstated, revoked) go out as soon as they arrive."""
        if self._notices:
            await self._flush_notices()
            return Wake.AGAIN
        return None

    async def at_deadline(self) -> Wake | None:
        """Nothing of its own happens at a deadline."""
        return None

    def waiting(self) -> bool:
        """A status notice wakes the ladder."""
        return bool(self._notices)

    async def replan_zone(self, signal: ReplanSignal) -> None:
        """Re-plan this cycle's instants in the holder's new zone (a ``replan`` signal)."""
        if self._expires_at is None:
            self._event(
                "replan_skipped",
                f"time zone {signal.time_zone} by {signal.actor}: this cycle plans with a fixed"
                f" UTC offset ({self._ladder.offset:+d} min)",
            )
            return
        plan = await self._ladder.plan(self._plan_request())
        if plan.found:
            self._apply_plan(plan)
        self._remark = True
        self._event("replanned", f"time zone {self._ladder.zone} (by {signal.actor})")
        self._ladder.dirty = True

    def reminder(
        self, stage: LadderStage, *, late_notice: bool, event: str | None
    ) -> ReminderRequest:
        """The ``send_reminder`` request for a stage, or (``event``) a status notice."""
        return ReminderRequest(
            workflow_id=workflow.info().workflow_id,
            person=self._input.person,
            kind=ObligationKind.CERTIFICATION,
            requirement_title=self._input.title,
            due_date=self._cert.expires_on,
            stage=stage.label,
            days_before_due=(self._cert.expires_on - self._today()).days,
            pack_hash=self._pack_hash,
            fired_at=workflow.now(),
            late_notice=late_notice,
            requirement_id=self._input.certification_id,
            acknowledged=self._acknowledged is not None,
            cycle=self._cert.cycle,
            ce_credits_short=self._short() if event is None else 0,
            notify=NOTICE_ROLES if event is not None else None,
            channels=NOTICE_CHANNELS if event is not None else None,
            event=event,
        )

    async def record(self) -> None:
        """Decide the status with the pinned pack and write the read models."""
        if self._pack_hash != BUILTIN_PACK:
            decision = await self._ladder.decide(
                DecideRequest.of(
                    ObligationFacts(
                        kind=ObligationKind.CERTIFICATION,
                        requirement_id=self._input.certification_id,
                        expiry_date=self._cert.expires_on,
                        acknowledged=self._acknowledged is not None,
                        ce_credits_short=self._short(),
                    ),
                    workflow_id=workflow.info().workflow_id,
                    pack_hash=self._pack_hash,
                    person=self._input.person,
                    as_of=workflow.now(),
                )
            )
            status, rule = decision.status, decision.rule
        else:
            expired = workflow.now() >= self._expired_at()
            status, rule = ("non_compliant" if expired else "compliant"), "builtin"
        if status != self._status:
            self._event("status", f"{status} (rule {rule})")
        self._status = status
        current = self._current_status()
        await self._ladder.record_obligation(
            ObligationUpdate(
                workflow_id=workflow.info().workflow_id,
                person=self._input.person,
                kind=ObligationKind.CERTIFICATION,
                requirement_id=self._input.certification_id,
                requirement_title=self._input.title,
                cycle=self._cert.cycle,
                due_date=self._cert.expires_on,
                expiry_date=self._cert.expires_on,
                stage=self._ladder.stage,
                status=current,
                pack_hash=self._pack_hash,
                acknowledged_at=self._acknowledged.acknowledged_at if self._acknowledged else None,
                as_of=workflow.now(),
                ce_credits_short=self._short(),
                suspended=self._suspended is not None,
                time_zone=self._ladder.zone,
                rule=rule if current == status else f"held: {current}",
            )
        )
        await self._record_certificate(current)

    # -- helpers --------------------------------------------------------------------------

    def _refuse_if_closed(self) -> None:
        if self._revoked is not None:
            raise ValueError("the certification was revoked")
        if self._cancelled is not None:
            raise ValueError("the certification was closed (its holder left)")
        if self._renewal is not None:
            raise ValueError("the certification is already being renewed")

    def _today(self) -> date:
        return (workflow.now() + timedelta(minutes=self._ladder.offset)).date()

    def _logged(self) -> float:
        return sum(c.credits for c in self._credits)

    def _short(self) -> int:
        return ce_credits_short(self._required, self._logged())

    def _current_status(self) -> str:
        if self._revoked is not None:
            return CertificationStatus.REVOKED.value
        if self._cancelled is not None:
            return CertificationStatus.CANCELLED.value
        if self._suspended is not None:
            return CertificationStatus.SUSPENDED.value
        return self._status

    def _marks(self) -> list[_Mark]:
        """Every moment this cycle acts at, in time order (stages before transitions on ties)."""
        offset = self._input.utc_offset_minutes
        expires = self._cert.expires_on
        sent = self._ladder.sent
        marks = [_Mark(s.fire_at, "stage", s) for s in self._ladder.stages if s.label not in sent]
        if self._window_days is not None:
            opens = expires - timedelta(days=self._window_days)
            marks.append(
                _Mark(self._window_at or due_instant(opens - timedelta(days=1), offset), "window")
            )
        marks.append(_Mark(self._expired_at(), "expired"))
        if self._grace_days > 0:
            grace_end = expires + timedelta(days=self._grace_days)
            marks.append(_Mark(self._grace_at or due_instant(grace_end, offset), "grace_ended"))
        order = {"stage": 0, "window": 1, "expired": 2, "grace_ended": 3}
        return sorted(marks, key=lambda m: (m.at, order[m.kind]))

    def _expired_at(self) -> datetime:
        """The end of the expiry day in the holder's zone (or the input's fixed offset)."""
        return self._expires_at or due_instant(
            self._cert.expires_on, self._input.utc_offset_minutes
        )

    def _plan_request(self) -> PlanRequest:
        return PlanRequest(
            pack_hash=self._pack_hash,
            requirement_id=self._input.certification_id,
            person=self._input.person,
            due_date=self._cert.expires_on,
        )

    async def _plan(self) -> None:
        plan = await self._ladder.plan(self._plan_request())
        if not plan.found:
            self._event("pack_missing_requirement", f"{self._pack_hash[:12]}: built-in ladder")
            return
        self._days_before = tuple(plan.days_before)
        self._required = plan.ce_credits
        self._window_days = plan.renewal_window_days
        self._grace_days = plan.grace_days
        self._apply_plan(plan)

    def _apply_plan(self, plan: StagePlan) -> None:
        """Use the plan's in-zone instants; a plan recorded before them has none."""
        if not self._ladder.apply_zone_plan(plan):
            self._ladder.stages = plan_ladder(
                self._cert.expires_on, self._input.utc_offset_minutes, self._days_before
            )
            return
        self._expires_at = plan.due_at
        self._window_at = plan.window_opens_at
        self._grace_at = plan.grace_ends_at

    async def _while_suspended(self) -> None:
        """Hold the ladder until reinstated (or revoked/renewed); stages that passed are dropped."""
        ladder = self._ladder
        while self._suspended is not None and not self.closed():
            await ladder.sleep_until(None)
        if self._suspended is None and not self.closed():
            now = workflow.now()
            for stage in ladder.stages:
                if stage.fire_at <= now and stage.label not in ladder.sent:
                    ladder.sent.append(stage.label)
                    self._event("stage_skipped", f"{stage.label} fell in the suspension")
            await self.record()

    async def _transition(self, kind: str) -> None:
        """A status boundary: re-decide now; the end of grace is announced.

        With no grace period the end of validity is that moment: the holder and their manager
        are told the certification lapsed.
        """
        await self.record()
        if kind == "grace_ended" or (kind == "expired" and self._grace_days == 0):
            self._notices.append(("lapsed", f"status {self._status}"))
            await self._flush_notices()

    async def _flush_notices(self) -> None:
        """Record and send the pending notices (suspended, reinstated, revoked, lapsed)."""
        while self._notices:
            event, detail = self._notices.pop(0)
            self._event(event, detail)
            await self.record()
            # One ledger entry per notice: a second suspension in a cycle is a new message.
            count = self._ladder.count(event)
            label = event if count == 1 else f"{event}-{count}"
            stage = LadderStage(label=label, days_before_due=0, fire_at=workflow.now())
            await self._ladder.send(stage, event=event)

    async def _record_certificate(self, status: str) -> None:
        await workflow.execute_activity_method(
            CertificationActivities.record_certificate,
            CertificateUpdate(
                workflow_id=workflow.info().workflow_id,
                person=self._input.person,
                certification_id=self._input.certification_id,
                title=self._input.title,
                certificate=self._cert,
                status=status,
                as_of=workflow.now(),
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )

    def _event(self, kind: str, detail: str) -> None:
        self._ladder.event(kind, detail)
