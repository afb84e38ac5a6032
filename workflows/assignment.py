"""AssignmentWorkflow: one training obligation of one person, from assignment to completion."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.rules import RulesActivities
    from activities.tracks import TrackActivities
    from domain.calendar import LadderStage, due_instant, next_due_date, plan_ladder
    from domain.contracts.assignment import (
        AssignmentEvent,
        AssignmentInput,
        AssignmentMessages,
        AssignmentResume,
        AssignmentState,
        CancelSignal,
        CompleteSignal,
        ExemptSignal,
        ExtendDueDate,
        GateAttempt,
        GrantAttempts,
        PauseSignal,
        ResumeSignal,
        StartSignal,
    )
    from domain.contracts.obligation import (
        AcknowledgeSignal,
        DecideRequest,
        GateSpec,
        ObligationFacts,
        ObligationMessages,
        ObligationUpdate,
        PlanRequest,
        RedeliverSignal,
        ReminderRequest,
        ReplanSignal,
        StagePlan,
    )
    from domain.contracts.packs import AdoptPackSignal, PackMigration
    from domain.contracts.tracks import NudgeRequest
    from domain.ids import BUILTIN_PACK
    from rules.assessment import Attempt, Evidence, Gate, GateDecision, Verdict, decide
    from rules.builtin import StatusDecision, builtin_status
    from rules.engine import Decision

from workflows.ladder import ACTIVITY_TIMEOUT, RETRY, ZONE_PLANNING_PATCH, Ladder, Wake

__all__ = [
    "ACTIVITY_TIMEOUT",
    "FAILED_STATUS",
    "NUDGE_PROJECTS_PATCH",
    "RETRY",
    "ZONE_PLANNING_PATCH",
    "AssignmentWorkflow",
    "Wake",
]

#: Workflows started (or replayed past completion) with this patch tell the projects waiting on
#: the person's tracks that a course completed (``nudge_projects``); older histories did not.
NUDGE_PROJECTS_PATCH = "nudge-projects-on-completion"
#: Workflows with this patch hold completion evidence that arrives before the pinned pack's plan
#: (and so its assessment gate) is known, and judge it once planned; older histories judged it
#: at once, without the gate.
EVIDENCE_AFTER_PLAN_PATCH = "evidence-waits-for-plan"
#: The status of an assignment whose assessment attempts are all used (HR may grant more).
FAILED_STATUS = "failed"
#: Who hears that the attempts are exhausted, and how (HR escalated, the manager told).
FAILED_NOTIFY = ["learner", "manager", "hr"]
FAILED_CHANNELS = ["email", "in_app"]


@workflow.defn
class AssignmentWorkflow(ObligationMessages, AssignmentMessages):
    """Carries one assignment: a training, apprenticeship or mentorship (``input.kind``).

    Sends the learner a reminder at each stage of the 90/60/30/14/7/0-day ladder (an assignment
    created late gets one immediate notice for the current stage instead of a burst of past
    ones), turns overdue at the end of the due day, and finishes when completion evidence
    arrives. Signals: ``complete``, ``acknowledge``, ``start``, ``exempt``, ``cancel``,
    ``redeliver``, ``adopt_pack``, ``replan``. Update: ``extend_due_date``. Query: ``state``.

    Time: every instant (stages at 09:00 local, the end of the due day, an exemption's lapse)
    is planned by the ``plan_stages`` activity in the person's IANA zone; ``replan`` (the
    person moved zone) plans the stages not sent yet again. Histories recorded before
    :data:`ZONE_PLANNING_PATCH` keep one fixed UTC offset (``input.utc_offset_minutes``).

    Pinning: the workflow keeps the rules pack it started with (``input.pack_hash``). Under a
    deployed pack the ladder comes from the requirement's escalation policy and every status
    is decided by the ``decide_status`` activity (durable_rules), so each decision is in the
    history with its rule and pack hash. ``builtin`` (no pack deployed) keeps the fixed ladder
    and the built-in status rules. ``adopt_pack`` moves a running workflow to a newer pack:
    ``rebase`` at its next step, ``apply_now`` at once.
    """

    @workflow.init
    def __init__(self, input: AssignmentInput) -> None:
        self._input = input
        # Until the planning activity answers (and for histories from before it): one offset.
        self._ladder = Ladder(
            self,
            event_type=AssignmentEvent,
            stages=plan_ladder(input.due_date, input.utc_offset_minutes),
            offset=input.utc_offset_minutes,
            deferral_survives_replan=True,
            silent_delivery="to learner by email ({status})",
            continue_as_new=self._continue_as_new,
        )
        self._in_zone = False
        self._lapse_at: datetime | None = None
        self._due_at: datetime = due_instant(input.due_date, input.utc_offset_minutes)
        self._completion: CompleteSignal | None = None
        self._acknowledgement: AcknowledgeSignal | None = None
        self._decision: StatusDecision | Decision | None = None
        self._pack_hash = input.pack_hash
        self._pending: AdoptPackSignal | None = None
        self._upcoming: list[LadderStage] = []
        self._due_date = input.due_date
        self._started: StartSignal | None = None
        self._cancelled: CancelSignal | None = None
        self._exemption: ExemptSignal | None = None
        #: On leave (the directory automation): the ladder holds until resumed.
        self._paused: PauseSignal | None = None
        self._paused_at: datetime | None = None
        self._max_extension_days = 30
        self._recurrence: StagePlan | None = None
        self._days_before: tuple[int, ...] = tuple(s.days_before_due for s in self._ladder.stages)
        #: The due date the status last turned overdue for.
        self._overdue_for: date | None = None
        #: The requirement's assessment gate (from the pinned pack's plan), the failed attempts
        #: counted against it, attempts HR granted, and whether every attempt is used.
        self._gate: GateSpec | None = None
        self._gate_attempts: list[GateAttempt] = []
        self._extra_attempts = 0
        self._failed = False
        #: The "attempts exhausted" notice waits for the main loop (a signal cannot send).
        self._failed_notice = False
        #: Whether the pinned pack's plan (with its gate) is known; evidence waits until it is.
        self._planned = input.pack_hash == BUILTIN_PACK or input.resume is not None
        self._early_evidence: list[CompleteSignal] = []
        if input.resume is not None:
            self._resume(input.resume)

    # -- messages -------------------------------------------------------------------------

    @workflow.signal
    def complete(self, signal: CompleteSignal) -> None:
        """Accept completion evidence (the first one wins; later ones are noted and ignored).

        A failed attempt (``passed`` false) is recorded and does not complete. With an
        assessment gate (the requirement's ``passing_score``/``max_attempts``), the gate
        decides instead (see :meth:`_judge`).
        """
        ladder = self._ladder
        if not self._planned and workflow.patched(EVIDENCE_AFTER_PLAN_PATCH):
            # The pack's gate is not known yet (the plan activity runs): judging now would
            # let a score below the pass mark complete. Judged in order once planned.
            self._early_evidence.append(signal)
            return
        if self._gate is not None:
            self._judge(signal)
            return
        if signal.passed is False:
            # Counted, and listed up to a bound: an LMS may report any number of attempts.
            score = f", score {signal.score}" if signal.score is not None else ""
            ladder.note("attempt_failed", f"{signal.source} by {signal.actor}{score}")
            return
        if self._cancelled is not None:
            ladder.note("completion_ignored", f"cancelled; {signal.source} by {signal.actor}")
            return
        if self._completion is not None:
            ladder.note(
                "completion_ignored", f"already completed; {signal.source} by {signal.actor}"
            )
            return
        if self._input.cycle > 1 and signal.completed_at < self._first_started_at():
            # Evidence of an attempt made before this cycle existed counted for an earlier one.
            ladder.note(
                "completion_ignored",
                f"evidence from {signal.completed_at} predates cycle {self._input.cycle};"
                f" {signal.source} by {signal.actor}",
            )
            return
        self._completion = signal
        evidence = "".join(
            f", {name} {value}"
            for name, value in (
                ("score", signal.score),
                ("attempt", signal.attempt_id),
                ("certificate", signal.certificate_id),
            )
            if value is not None
        )
        self._event(
            "completed", f"{signal.source} by {signal.actor} at {signal.completed_at}{evidence}"
        )

    def _judge(self, signal: CompleteSignal) -> None:
        """Completion evidence under an assessment gate (``rules.assessment.decide``).

        Below the pass mark is a failed attempt; the last allowed one makes the assignment
        ``failed`` (reminders stop; learner, manager and HR are told); evidence inside the
        retake cool-down, after the attempts are used, or without a score is noted, not counted.
        """
        assert self._gate is not None
        ladder = self._ladder
        who = f"{signal.source} by {signal.actor}"
        if self.closed():
            state = "cancelled" if self._cancelled is not None else "already completed"
            ladder.note("completion_ignored", f"{state}; {who}")
            return
        if self._input.cycle > 1 and signal.completed_at < self._first_started_at():
            ladder.note(
                "completion_ignored",
                f"evidence from {signal.completed_at} predates cycle {self._input.cycle}; {who}",
            )
            return
        decision = self._gate_decision(signal)
        detail = f"{who}: {decision.reason}" + "".join(f"; {n}" for n in decision.notes)
        verdict = decision.verdict
        if verdict is Verdict.COMPLETED:
            self._completion = signal
            self._event("completed", f"{who} at {signal.completed_at}: {decision.reason}")
            return
        if verdict in (Verdict.FAILED_ATTEMPT, Verdict.FAILED):
            self._gate_attempts.append(
                GateAttempt(at=signal.completed_at, score=signal.score_percent)
            )
            ladder.note("attempt_failed", detail)
            ladder.dirty = True
            if verdict is Verdict.FAILED:
                self._failed = True
                self._failed_notice = True
                self._event("failed", detail)
            return
        kind = "retake_not_yet" if verdict is Verdict.RETAKE_NOT_YET else "attempt_not_counted"
        ladder.note(kind, detail)

    def _gate_decision(self, signal: CompleteSignal) -> GateDecision:
        assert self._gate is not None
        return decide(
            Gate(
                passing_score=self._gate.passing_score,
                max_attempts=self._gate.max_attempts,
                retake_after_days=self._gate.retake_after_days,
            ),
            [Attempt(at=a.at, score=a.score) for a in self._gate_attempts],
            Evidence(at=signal.completed_at, score=signal.score_percent, lms_passed=signal.passed),
            extra_attempts=self._extra_attempts,
        )

    def _attempts_allowed(self) -> int | None:
        if self._gate is None or self._gate.max_attempts is None:
            return None
        return self._gate.max_attempts + self._extra_attempts

    def _retake_opens_at(self) -> datetime | None:
        if self._gate is None or not self._gate.retake_after_days or not self._gate_attempts:
            return None
        opens = max(a.at for a in self._gate_attempts) + timedelta(
            days=self._gate.retake_after_days
        )
        return opens if opens > workflow.now() else None

    @workflow.update
    async def grant_attempts(self, update: GrantAttempts) -> AssignmentState:
        """HR grants extra attempts at the assessment gate; a ``failed`` assignment reopens."""
        self._extra_attempts += update.attempts
        allowed = self._attempts_allowed()
        self._event(
            "attempts_granted",
            f"{update.attempts} by {update.actor} (now {allowed} allowed): {update.reason}",
        )
        if self._failed and (allowed is None or len(self._gate_attempts) < allowed):
            self._failed = False
            self._failed_notice = False
            left = "unlimited" if allowed is None else str(allowed - len(self._gate_attempts))
            self._event("reopened", f"{left} attempt(s) left")
            # Reminders resume from now: stages that fell due while failed are not a burst.
            self._upcoming = self._ladder.unsent_after(workflow.now())
            self._ladder.replanned = True
        self._ladder.dirty = True
        return self.state()

    @grant_attempts.validator
    def _validate_grant(self, update: GrantAttempts) -> None:
        if self.closed():
            raise ValueError("the assignment is closed (completed or cancelled)")
        if self._gate is None or self._gate.max_attempts is None:
            raise ValueError(
                "this requirement has no attempt limit (max_attempts) in the pinned rules pack;"
                " there is nothing to grant"
            )

    @workflow.signal
    def acknowledge(self, signal: AcknowledgeSignal) -> None:
        """Record that the learner acknowledged the reminders (first acknowledgement kept)."""
        if self._acknowledgement is not None or self._completion is not None:
            return
        self._acknowledgement = signal
        self._ladder.dirty = True
        self._event("acknowledged", f"by {signal.actor} via {signal.channel}")

    @workflow.signal
    def adopt_pack(self, signal: AdoptPackSignal) -> None:
        """Move to a newly deployed pack: at the next step (rebase) or now (apply_now)."""
        if signal.pack_hash == self._pack_hash or self._completion is not None:
            return
        self._pending = signal
        self._event(
            "pack_deployed",
            f"{signal.pack_hash[:12]} by {signal.deployed_by}, {signal.mode.value}",
        )

    @workflow.signal
    def redeliver(self, signal: RedeliverSignal) -> None:
        """A message of a sent stage bounced: re-send that stage (the failed channel falls back)."""
        if self._completion is not None or signal.stage not in self._ladder.sent:
            return
        self._ladder.queue_redelivery(signal)

    @workflow.signal
    def start(self, signal: StartSignal) -> None:
        """The learner began the training (a fact for the rules and stage ``unless``)."""
        if self._started is None and not self.closed():
            self._started = signal
            self._ladder.dirty = True
            self._event("started", f"{signal.source} by {signal.actor}")

    @workflow.signal
    def cancel(self, signal: CancelSignal) -> None:
        """Close the obligation without completion; reminders stop at once."""
        if self.closed():
            return
        self._cancelled = signal
        self._event("cancelled", f"by {signal.actor}: {signal.reason}")

    @workflow.signal
    def pause(self, signal: PauseSignal) -> None:
        """The person went on leave: reminders and escalations wait until :meth:`resume`."""
        if self.closed() or self._paused is not None:
            return
        self._paused = signal
        self._paused_at = workflow.now()
        self._ladder.replanned = True
        self._event("paused", f"by {signal.actor}: {signal.reason}")

    @workflow.signal
    def resume(self, signal: ResumeSignal) -> None:
        """Back from leave: the due date moves by the leave (when asked) and reminders resume."""
        if self.closed() or self._paused is None:
            return
        ladder = self._ladder
        since = self._paused_at or workflow.now()
        days = (workflow.now() - since).days
        self._paused, self._paused_at = None, None
        detail = f"by {signal.actor}: {signal.reason}"
        if signal.extend_due_date and days > 0:
            old = self._due_date
            self._due_date = old + timedelta(days=days)
            self._due_at = due_instant(self._due_date, ladder.offset)
            ladder.stages = plan_ladder(self._due_date, ladder.offset, self._days_before)
            ladder.dirty = True
            detail += f"; due {old.isoformat()} -> {self._due_date.isoformat()} ({days} days)"
        # Stages that fell during the leave are not sent late: the ladder resumes from now.
        self._upcoming = ladder.unsent_after(workflow.now())
        ladder.replanned = True
        self._event("resumed", detail)

    @workflow.signal
    def exempt(self, signal: ExemptSignal) -> None:
        """Exempt the person (reminders pause); the exemption lapses on its own timer."""
        if self.closed():
            return
        self._exemption = signal
        self._ladder.replanned = True
        until = signal.expires_on.isoformat() if signal.expires_on else "until revoked"
        self._event(
            "exempted",
            f"by {signal.actor}, approved by {signal.approver}, {until}: {signal.reason}",
        )

    @workflow.signal
    def replan(self, signal: ReplanSignal) -> None:
        """The person's time zone changed: re-plan the stages not sent yet in the new zone."""
        if not self.closed():
            self._ladder.zone_change = signal

    @workflow.update
    async def extend_due_date(self, update: ExtendDueDate) -> AssignmentState:
        """Move the due date later and re-plan the remaining stages at once (in-zone)."""
        ladder = self._ladder
        old = self._due_date
        self._due_date = update.new_due_date
        # Provisional (one offset), so the loop never acts on the old due date meanwhile.
        self._due_at = due_instant(update.new_due_date, ladder.offset)
        ladder.stages = plan_ladder(update.new_due_date, ladder.offset, self._days_before)
        self._upcoming = ladder.unsent_after(workflow.now())
        ladder.replanned = True
        ladder.dirty = True
        self._event(
            "due_date_extended",
            f"{old.isoformat()} -> {update.new_due_date.isoformat()} by {update.actor}: "
            f"{update.reason}",
        )
        if self._in_zone:
            await self._replan()
            self._upcoming = ladder.unsent_after(workflow.now())
            ladder.replanned = True
        return self.state()

    @extend_due_date.validator
    def _validate_extension(self, update: ExtendDueDate) -> None:
        if self.closed():
            raise ValueError("the assignment is closed (completed or cancelled)")
        if update.new_due_date <= self._due_date:
            raise ValueError(
                f"the new due date must be after the current one ({self._due_date.isoformat()})"
            )
        days = (update.new_due_date - self._input.due_date).days
        if days > self._max_extension_days:
            raise ValueError(
                f"at most {self._max_extension_days} days past the original due date"
                f" ({self._input.due_date.isoformat()}) may be granted; asked for {days}"
            )

    @workflow.query
    def state(self) -> AssignmentState:
        """The assignment as the workflow sees it now."""
        return AssignmentState(
            workflow_id=workflow.info().workflow_id,
            person=self._input.person,
            requirement_id=self._input.requirement_id,
            requirement_title=self._input.requirement_title,
            cycle=self._input.cycle,
            due_date=self._due_date,
            status=self._current_decision().status,
            stage=self._ladder.stage,
            stages=self._ladder.stages,
            stages_sent=list(self._ladder.sent),
            acknowledged_at=self._acknowledgement.acknowledged_at
            if self._acknowledgement
            else None,
            completed_at=self._completion.completed_at if self._completion else None,
            pack_hash=self._pack_hash,
            events=list(self._ladder.events),
            failed_attempts=self._ladder.repeats.get("attempt_failed", 0),
            gate=self._gate,
            attempts_allowed=self._attempts_allowed(),
            retake_opens_at=self._retake_opens_at(),
        )

    # -- main -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: AssignmentInput) -> AssignmentState:
        """Walk the ladder, then wait for completion."""
        ladder = self._ladder
        if input.resume is not None:
            # Continued as new: the state came in the input; only the decision is asked again.
            self._decision = await self._decide()
        else:
            await self._open(input)

        # Stages and the due instant in time order: a policy may have stages after the due
        # date (+7d escalations), and the status must turn overdue at the due instant itself.
        # An extension moves both; an exemption pauses the ladder until it lapses.
        while not self.closed():
            if self._paused is not None:
                await self.record()
                while not self.closed() and self._paused is not None:
                    await ladder.sleep_until(None)
                continue
            if self._exemption is not None:
                await self._while_exempt()
                continue
            if self._failed:
                # Every attempt is used: no reminders until HR grants another (or it closes).
                await ladder.sleep_until(None)
                continue
            stage = self._upcoming[0] if self._upcoming else None
            if self._overdue_for != self._due_date and (
                stage is None or self._due_at <= stage.fire_at
            ):
                wake = await ladder.sleep_until(self._due_at)
                if wake is Wake.DEADLINE:
                    self._overdue_for = self._due_date
                    self._event(
                        "overdue", f"not completed by the end of {self._due_date.isoformat()}"
                    )
                    await self.record()
                continue
            if stage is None:
                await ladder.sleep_until(None)
                continue
            wake = await ladder.sleep_until(stage.fire_at)
            if wake is Wake.DEADLINE and self._upcoming and self._upcoming[0] is stage:
                await ladder.send(self._upcoming.pop(0))

        await self.record()
        if self._completion is not None and self._recurrence is not None:
            await self._start_next_cycle(self._recurrence, self._completion)
        if self._completion is not None and workflow.patched(NUDGE_PROJECTS_PATCH):
            # A project's go-live may have waited for this course: it looks at readiness now.
            await workflow.execute_activity_method(
                TrackActivities.nudge_projects,
                NudgeRequest(
                    person=self._input.person,
                    requirement_id=self._input.requirement_id,
                    at=workflow.now(),
                ),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
        return self.state()

    async def _open(self, input: AssignmentInput) -> None:
        """A new assignment: plan, record, and one late notice if it started late."""
        ladder = self._ladder
        now = workflow.now()
        self._event("assigned", f"by {input.assigned_by}, due {input.due_date.isoformat()}")
        if self._pack_hash == BUILTIN_PACK and workflow.patched(ZONE_PLANNING_PATCH):
            # A pinned pack's plan comes with instants; the built-in ladder asks for them here.
            await self._replan()
        await self.record()

        if self._pack_hash != BUILTIN_PACK:
            await self._plan_from_pack(self._pack_hash)
            self._planned = True
            early, self._early_evidence = self._early_evidence, []
            for evidence in early:
                self.complete(evidence)
            await self.record()

        past = [s for s in ladder.stages if s.fire_at <= now]
        self._upcoming = [s for s in ladder.stages if s.fire_at > now]
        if past and self._completion is None:
            await ladder.catch_up(past, before="assignment")

    # -- continuing as new -------------------------------------------------------------------

    def _first_started_at(self) -> datetime:
        """When this cycle's first run started (a continued run carries it)."""
        resume = self._input.resume
        return resume.first_started_at if resume is not None else workflow.info().start_time

    def _continue_as_new(self) -> None:
        """The history grew long (a flood of signals): carry on in a new run with this state.

        Called by the ladder when it is idle: every message is handled, no activity or update
        is in flight, no deferred send waits, and the assignment is open.
        """
        ladder = self._ladder
        previous = self._input.resume
        continued = previous.continued + 1 if previous is not None else 1
        self._event(
            "continued_as_new",
            f"history at {workflow.info().get_current_history_length()} events; run {continued + 1}"
            " carries on",
        )
        resume = AssignmentResume(
            first_started_at=self._first_started_at(),
            due_date=self._due_date,
            due_at=self._due_at,
            in_zone=self._in_zone,
            lapse_at=self._lapse_at,
            pack_hash=self._pack_hash,
            pending=self._pending,
            started=self._started,
            acknowledgement=self._acknowledgement,
            exemption=self._exemption,
            max_extension_days=self._max_extension_days,
            days_before=list(self._days_before),
            recurrence=self._recurrence,
            upcoming=list(self._upcoming),
            overdue_for=self._overdue_for,
            stages=list(ladder.stages),
            sent=list(ladder.sent),
            stage=ladder.stage,
            last_sent_at=ladder.last_sent_at,
            events=list(ladder.events),
            zone=ladder.zone,
            offset=ladder.offset,
            redeliver=list(ladder.redeliver),
            repeats=dict(ladder.repeats),
            continued=continued,
            gate=self._gate,
            gate_attempts=list(self._gate_attempts),
            extra_attempts=self._extra_attempts,
            failed=self._failed,
            paused=self._paused,
            paused_at=self._paused_at,
        )
        workflow.continue_as_new(self._input.model_copy(update={"resume": resume}))

    def _resume(self, resume: AssignmentResume) -> None:
        """Take up where the previous run stood (see :meth:`_continue_as_new`)."""
        ladder = self._ladder
        ladder.stages = list(resume.stages)
        ladder.sent = list(resume.sent)
        ladder.stage = resume.stage
        ladder.last_sent_at = resume.last_sent_at
        ladder.events = list(resume.events)
        ladder.zone = resume.zone
        ladder.offset = resume.offset
        ladder.redeliver = list(resume.redeliver)
        ladder.repeats = dict(resume.repeats)
        self._due_date = resume.due_date
        self._due_at = resume.due_at
        self._in_zone = resume.in_zone
        self._lapse_at = resume.lapse_at
        self._pack_hash = resume.pack_hash
        self._pending = resume.pending
        self._started = resume.started
        self._acknowledgement = resume.acknowledgement
        self._exemption = resume.exemption
        self._paused = resume.paused
        self._paused_at = resume.paused_at
        self._max_extension_days = resume.max_extension_days
        self._days_before = tuple(resume.days_before)
        self._recurrence = resume.recurrence
        self._upcoming = list(resume.upcoming)
        self._overdue_for = resume.overdue_for
        self._gate = resume.gate
        self._gate_attempts = list(resume.gate_attempts)
        self._extra_attempts = resume.extra_attempts
        self._failed = resume.failed

    # -- the ladder's questions (workflows.ladder.LadderFamily) ---------------------------

    def closed(self) -> bool:
        """Completed or cancelled: the ladder stops."""
        return self._completion is not None or self._cancelled is not None

    async def interrupt(self) -> Wake | None:
        """A pending ``apply_now`` adoption is handled as soon as it arrives.

        So is the notice that the assessment attempts are exhausted.
        """
        if self._failed_notice:
            self._failed_notice = False
            await self.record()
            count = self._ladder.count("failed")
            label = "failed" if count <= 1 else f"failed-{count}"
            stage = LadderStage(
                label=label, days_before_due=self._days_left(), fire_at=workflow.now()
            )
            await self._ladder.send(stage, event="failed")
            # The main loop looks again: a failed assignment holds its reminders.
            return Wake.REPLANNED
        if self._pending is not None and self._pending.mode is PackMigration.APPLY_NOW:
            await self._adopt()
            return Wake.REPLANNED
        return None

    async def at_deadline(self) -> Wake | None:
        """A pending ``rebase`` adoption is handled at the workflow's next step."""
        if self._pending is not None:
            await self._adopt()
            return Wake.REPLANNED
        return None

    def waiting(self) -> bool:
        """An ``apply_now`` adoption (or an attempts-exhausted notice) wakes the ladder."""
        return self._failed_notice or (
            self._pending is not None and self._pending.mode is PackMigration.APPLY_NOW
        )

    async def replan_zone(self, signal: ReplanSignal) -> None:
        """Re-plan the stages not sent yet in the person's new zone (a ``replan`` signal).

        An unsent stage whose new instant has already passed goes out once, now, as a late
        notice (never a burst). Workflows from before zone-aware planning keep their offset.
        """
        ladder = self._ladder
        if not self._in_zone:
            self._event(
                "replan_skipped",
                f"time zone {signal.time_zone} by {signal.actor}: this assignment plans with a"
                f" fixed UTC offset ({ladder.offset:+d} min)",
            )
            return
        waiting = {s.label for s in self._upcoming}
        await self._replan()
        now = workflow.now()
        missed = [s for s in ladder.stages if s.fire_at <= now and s.label in waiting]
        self._upcoming = ladder.unsent_after(now)
        following = self._upcoming[0].fire_at.isoformat() if self._upcoming else "none"
        self._event(
            "replanned",
            f"time zone {ladder.zone} (by {signal.actor}); next stage at {following}",
        )
        ladder.dirty = True
        if missed and not self.closed() and self._exemption is None:
            await ladder.send(missed[-1], late_notice=True)

    def reminder(
        self, stage: LadderStage, *, late_notice: bool, event: str | None = None
    ) -> ReminderRequest:
        """The ``send_reminder`` request for one stage, or (``event``) the ``failed`` notice."""
        return ReminderRequest(
            workflow_id=workflow.info().workflow_id,
            person=self._input.person,
            kind=self._input.kind,
            requirement_title=self._input.requirement_title,
            due_date=self._due_date,
            stage=stage.label,
            # The real days left, not the stage's offset: a late notice for a stage of
            # -7d may go out with 3 days left, and the learner must read "3 days".
            days_before_due=self._days_left(),
            pack_hash=self._pack_hash,
            fired_at=workflow.now(),
            late_notice=late_notice,
            requirement_id=self._input.requirement_id,
            acknowledged=self._acknowledgement is not None,
            started=self._started is not None,
            notify=FAILED_NOTIFY if event is not None else None,
            channels=FAILED_CHANNELS if event is not None else None,
            event=event,
        )

    async def record(self) -> None:
        """Decide the status and write the obligation's read model."""
        decision = await self._decide()
        if self._decision is None or decision.status != self._decision.status:
            self._event("status", f"{decision.status} (rule {decision.rule})")
        self._decision = decision
        await self._ladder.record_obligation(
            ObligationUpdate(
                workflow_id=workflow.info().workflow_id,
                person=self._input.person,
                kind=self._input.kind,
                requirement_id=self._input.requirement_id,
                requirement_title=self._input.requirement_title,
                cycle=self._input.cycle,
                due_date=self._due_date,
                stage=self._ladder.stage,
                status=decision.status,
                pack_hash=self._pack_hash,
                acknowledged_at=(
                    self._acknowledgement.acknowledged_at if self._acknowledgement else None
                ),
                completed_at=self._completion.completed_at if self._completion else None,
                as_of=workflow.now(),
                started_at=self._started.started_at if self._started else None,
                exempt=self._exemption is not None,
                exempt_until=self._exemption.expires_on if self._exemption else None,
                time_zone=self._ladder.zone,
                rule=decision.rule,
            )
        )

    # -- helpers --------------------------------------------------------------------------

    async def _start_next_cycle(self, plan: StagePlan, completion: CompleteSignal) -> None:
        """Start the next cycle as its own workflow (``…/{cycle + 1}``).

        Each cycle keeps its own bounded history and record; the ids link them.
        """
        assert plan.recurrence_months is not None
        offset = timedelta(minutes=self._ladder.offset)
        next_due = next_due_date(
            basis=plan.basis or "from_completion",
            months=plan.recurrence_months,
            completed_on=(completion.completed_at + offset).date(),
            previous_due=self._due_date,
            anniversary=plan.anniversary,
        )
        following = self._input.model_copy(
            update={
                "cycle": self._input.cycle + 1,
                "due_date": next_due,
                "assigned_by": f"recurrence of cycle {self._input.cycle}",
                "pack_hash": self._pack_hash,
                "resume": None,
            }
        )
        await workflow.execute_activity_method(
            RulesActivities.start_next_cycle,
            following,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        self._event("next_cycle", f"cycle {following.cycle} due {next_due.isoformat()}")

    async def _while_exempt(self) -> None:
        """Hold the ladder while exempt; when the exemption lapses, re-plan from now."""
        exemption = self._exemption
        assert exemption is not None
        await self.record()
        if self._in_zone and exemption.expires_on is not None:
            await self._replan()  # the end of its last day, in the person's zone
        while not self.closed() and self._exemption is exemption:
            deadline = None
            if exemption.expires_on is not None:
                deadline = (
                    self._lapse_at
                    if self._in_zone and self._lapse_at is not None
                    else due_instant(exemption.expires_on, self._ladder.offset)
                )
            if await self._ladder.sleep_until(deadline) is Wake.DEADLINE:
                self._exemption = None
                self._event("exemption_lapsed", f"ended {exemption.expires_on}")
                self._upcoming = self._ladder.unsent_after(workflow.now())
                await self.record()

    def _plan_request(self, pack_hash: str) -> PlanRequest:
        return PlanRequest(
            pack_hash=pack_hash,
            requirement_id=self._input.requirement_id,
            person=self._input.person,
            due_date=self._due_date,
            exempt_until=self._exemption.expires_on if self._exemption is not None else None,
            track_id=self._input.track_id,
        )

    async def _plan_from_pack(self, pack_hash: str) -> bool:
        """Take the ladder from the pack's policy; False when the pack lacks the requirement."""
        plan = await self._ladder.plan(self._plan_request(pack_hash))
        if not plan.found:
            return False
        self._days_before = tuple(plan.days_before)
        self._max_extension_days = plan.max_extension_days
        self._gate = plan.gate
        self._recurrence = plan if plan.recurrence_months else None
        self._apply_plan(plan)
        return True

    async def _replan(self) -> None:
        """Plan every instant again in the person's zone (due date, exemption, zone changed)."""
        plan = await self._ladder.plan(self._plan_request(self._pack_hash))
        if plan.found:
            self._apply_plan(plan)

    def _apply_plan(self, plan: StagePlan) -> None:
        """Use the plan's instants; a plan recorded before zone-aware planning has none."""
        ladder = self._ladder
        if not ladder.apply_zone_plan(plan):
            ladder.stages = plan_ladder(self._due_date, ladder.offset, self._days_before)
            return
        assert plan.due_at is not None
        self._in_zone = True
        self._due_at = plan.due_at
        self._lapse_at = plan.exemption_lapses_at

    async def _adopt(self) -> None:
        """Adopt the pending pack: re-plan, re-decide, and catch up with at most one notice."""
        signal = self._pending
        assert signal is not None
        self._pending = None
        old = self._pack_hash
        if not await self._plan_from_pack(signal.pack_hash):
            self._event(
                "pack_not_adopted",
                f"{signal.pack_hash[:12]} has no requirement {self._input.requirement_id};"
                f" staying on {old[:12]}",
            )
            return
        self._pack_hash = signal.pack_hash
        self._event("pack_adopted", f"{old[:12]} -> {signal.pack_hash[:12]} ({signal.mode.value})")
        await self.record()
        ladder = self._ladder
        now = workflow.now()
        due_now = [
            s
            for s in ladder.stages
            if s.fire_at <= now
            and s.label not in ladder.sent
            and (ladder.last_sent_at is None or s.fire_at > ladder.last_sent_at)
        ]
        self._upcoming = [s for s in ladder.stages if s.fire_at > now]
        if due_now and not self.closed() and self._exemption is None:
            # The new ladder has a stage between the last notice and now: send it once, late.
            await ladder.send(due_now[-1], late_notice=True)

    def _days_left(self) -> int:
        """Whole days from the learner's local today to the due date (negative when overdue)."""
        local_now = workflow.now() + timedelta(minutes=self._ladder.offset)
        return (self._due_date - local_now.date()).days

    def _current_decision(self) -> StatusDecision | Decision:
        if self._failed and self._completion is None and self._cancelled is None:
            return Decision(
                status=FAILED_STATUS,
                rule="assessment_gate",
                pack_hash=self._pack_hash,
                facts={"failed_attempts": len(self._gate_attempts)},
            )
        if self._pack_hash != BUILTIN_PACK and self._decision is not None and not self._cancelled:
            return self._decision
        return builtin_status(
            now=workflow.now(),
            due_at=self._due_at,
            completed=self._completion is not None,
            cancelled=self._cancelled is not None,
            not_applicable=self._cancelled is not None
            and self._cancelled.status == "not_applicable",
        )

    async def _decide(self) -> StatusDecision | Decision:
        if self._pack_hash == BUILTIN_PACK or self._cancelled is not None or self._failed:
            return self._current_decision()
        return await self._ladder.decide(
            DecideRequest.of(
                self._facts(),
                workflow_id=workflow.info().workflow_id,
                pack_hash=self._pack_hash,
                person=self._input.person,
                as_of=workflow.now(),
            )
        )

    def _facts(self) -> ObligationFacts:
        """What this workflow knows that the rules decide with (the read model stores it too)."""
        return ObligationFacts(
            kind=self._input.kind,
            requirement_id=self._input.requirement_id,
            due_date=self._due_date,
            completed=self._completion is not None,
            acknowledged=self._acknowledgement is not None,
            started=self._started is not None,
            exempt=self._exemption is not None,
            exempt_until=self._exemption.expires_on if self._exemption is not None else None,
        )

    def _event(self, kind: str, detail: str) -> None:
        self._ladder.event(kind, detail)
