"""ApprenticeshipWorkflow: one apprentice in one program, for the years it takes.

One workflow id per (person, program): ``apprenticeship/{person}/{program}``, pinned to the pack
version it was enrolled under (the program's ``on_new_version`` is ``grandfather``: an enrolment
keeps its program). Every decision comes from the pure maths in :mod:`rules.apprenticeship`
(hours by period, advancement, expected hours, stall, evaluation due, graduation readiness);
the workflow only sleeps, waits for updates and calls activities:

- hours are logged (``log_hours``: refused with why, before anything is recorded, by
  :func:`rules.apprenticeship.check_entry`), approved or rejected (``review_hours``);
  evaluations sign skills off (``evaluate``); HR suspends, reinstates, withdraws
  (``change_enrolment``) and transfers the supervisor (``transfer_supervisor``);
- when a period's hours and skills are met the apprentice advances: the apprentice, the
  supervisor, HR/payroll and the sponsor hear the new wage percentage once (ledger key
  ``adv:p{n}``), and the run **continues as new** carrying a summary (:class:`Carried`);
- an evaluation not done ``grace_days`` after its due date escalates to the supervisor's
  manager (once per due date);
- no approved hours for ``stall.after_days``: the program's stall ladder (apprentice, then
  supervisor, sponsor, HR) fires rung by rung and stops as soon as approved hours resume;
  its rungs are the stages of the shared ladder runner (:class:`workflows.ladder.Ladder`),
  which also does the waiting: the run sleeps in :meth:`Ladder.sleep_until` until the next
  rung, evaluation date or message (see the LadderFamily methods at the end);
- suspension pauses everything (no clocks run: the pure maths counts suspended days out);
- graduation registers each awarded certification (``CertificationWorkflow``, verification
  code) through the certification service and tells everyone.

The compliance status (``on_track``/``behind``/``stalled``/``inactive`` in the field-technicians
pack) is decided by the pinned pack's status rules through durable_rules
(``decide_apprenticeship``, facts from :func:`rules.apprenticeship.program_facts` and the
person's directory attributes) each time the workflow records, that is whenever something
changes and at each of its wake-ups (a stall rung, an evaluation falling due or overdue), and is
recorded with the rule name and the pack hash. A pack with no status rule for programs leaves
the built-in :func:`rules.apprenticeship.compliance_status`; so do runs recorded before the
pack decided (patch ``apprenticeship-pack-status``).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.ladder import Ladder, Wake

with workflow.unsafe.imports_passed_through():
    from activities.apprenticeship import ApprenticeshipActivities
    from domain.calendar import LadderStage
    from domain.contracts.apprenticeship import (
        ApprenticeshipEvent,
        ApprenticeshipInput,
        ApprenticeshipState,
        AwardRequest,
        Carried,
        ChangeEnrolment,
        DecideApprenticeship,
        EnrolmentAction,
        LogHours,
        NoticeRequest,
        ProgramRequest,
        RecordApprenticeship,
        RecordEntry,
        RecordEvaluation,
        ReviewHours,
        SubmitEvaluation,
        TransferSupervisor,
    )
    from domain.contracts.obligation import ReminderRequest, ReplanSignal
    from domain.contracts.packs import AdoptPackSignal
    from rules.apprenticeship import (
        EnrollmentStatus,
        Enrolment,
        EntryStatus,
        Evaluation,
        HoursEntry,
        HoursKind,
        Progress,
        check_entry,
        compliance_status,
        program_facts,
        progress,
    )
    from rules.apprenticeship_model import Program, ProgramMigration, skill_key

TIMEOUT = timedelta(seconds=30)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
#: Notices go out at 09:00 in the apprentice's zone on the day they fall due.
NOTICE_HOUR = time(9)
#: Timeline lines kept in a run's state (the store keeps every entry and evaluation).
MAX_EVENTS = 200
#: Continue as new also when a run's history grows past this many events (a long period).
MAX_HISTORY_EVENTS = 10_000
EVERYONE = ["apprentice", "supervisor", "hr", "sponsor"]
#: Runs with this patch have the pinned pack's status rules decide (and record at each
#: wake-up); histories recorded before it keep the built-in answer.
PACK_STATUS_PATCH = "apprenticeship-pack-status"


def _fingerprint(entry: HoursEntry) -> str:
    """The content of an entry, for idempotency after it was folded into the summary."""
    skills = ",".join(skill_key(s) for s in entry.skills)
    text = f"{entry.day}|{entry.kind.value}|{entry.hours!r}|{skills}|{entry.description}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _yymmdd(day: date) -> str:
    return day.strftime("%y%m%d")


@workflow.defn
class ApprenticeshipWorkflow:
    """One apprenticeship, from enrolment to graduation (or withdrawal).

    Updates: ``log_hours``, ``review_hours``, ``evaluate``, ``change_enrolment``,
    ``transfer_supervisor`` (each answers the new state). Query: ``state``.
    """

    @workflow.init
    def __init__(self, input: ApprenticeshipInput) -> None:
        self._input = input
        carried = input.carried
        self._program: Program | None = None
        self._enrolment = Enrolment(
            enrolled_on=input.enrolled_on,
            status=carried.status if carried else EnrollmentStatus.ACTIVE,
            period=carried.period if carried else 1,
            active_since=carried.active_since if carried else None,
            suspended_on=carried.suspended_on if carried else None,
            paused_days=carried.paused_days if carried else 0,
        )
        self._supervisor = carried.supervisor if carried else input.supervisor
        self._entries: list[HoursEntry] = list(carried.entries) if carried else []
        self._entry_ids: dict[str, str] = dict(carried.entry_ids) if carried else {}
        last = carried.last_evaluation if carried else None
        self._evaluations: list[Evaluation] = [last] if last is not None else []
        self._evaluation_ids: set[str] = set()
        self._evaluations_done = carried.evaluations_done if carried else 0
        self._signed_off: dict[str, date] = dict(carried.signed_off) if carried else {}
        self._sent: list[str] = list(carried.sent) if carried else []
        self._runs = carried.runs if carried else 1
        #: The shared runner: the stall rungs are its stages (``sent`` is the notice keys sent,
        #: carried across runs), it sleeps until the next instant and keeps the timeline.
        self._ladder = Ladder(
            self,
            event_type=ApprenticeshipEvent,
            stages=[],
            offset=input.utc_offset_minutes,
            deferral_survives_replan=False,
        )
        self._ladder.sent = self._sent
        self._held: list[str] = []
        self._completed_on: date | None = None
        self._changed = False
        self._decided = ("on_track", "apprenticeship:on_track")
        #: The pack's last decision (status, rule); None: the built-in answer applies.
        self._pack_decision: tuple[str, str] | None = None
        #: The pack decides this run (set at the first record: see PACK_STATUS_PATCH).
        self._pack_decides = False
        #: The pack version this run is pinned to, and one deployed since to adopt.
        self._pack_hash = input.pack_hash
        self._next_pack: str | None = None
        self._adopt_now = False
        self._early_adopt: AdoptPackSignal | None = None

    # -- time ------------------------------------------------------------------------------

    def _today(self) -> date:
        return (workflow.now() + timedelta(minutes=self._input.utc_offset_minutes)).date()

    def _at(self, day: date) -> datetime:
        """``NOTICE_HOUR`` on ``day`` in the apprentice's zone, as a UTC instant."""
        local = datetime.combine(day, NOTICE_HOUR, UTC)
        return local - timedelta(minutes=self._input.utc_offset_minutes)

    # -- state -----------------------------------------------------------------------------

    @property
    def program(self) -> Program:
        """The program of the pinned pack (loaded first thing in ``run``)."""
        assert self._program is not None, "the program is loaded first thing in run()"
        return self._program

    def _progress(self) -> Progress:
        return progress(
            self.program,
            self._enrolment,
            self._entries,
            self._evaluations,
            today=self._today(),
            certifications_held=self._held,
            signed_off=self._signed_off,
        )

    def _event(self, kind: str, detail: str) -> None:
        self._ladder.event(kind, detail)
        del self._ladder.events[:-MAX_EVENTS]

    @workflow.query
    def state(self) -> ApprenticeshipState:
        """The apprenticeship now: status, period, hours, skills, evaluations, timeline."""
        done = self._progress()
        period = self.program.periods[self._enrolment.period - 1]
        status, rule = self._pack_decision or compliance_status(done)
        return ApprenticeshipState(
            workflow_id=self._input.workflow_id,
            person=self._input.person,
            program_id=self._input.program_id,
            pack_hash=self._pack_hash,
            supervisor=self._supervisor,
            status=self._enrolment.status,
            compliance_status=status,
            decided_by=rule,
            period=self._enrolment.period,
            wage_percentage=period.wage_percentage,
            enrolled_on=self._enrolment.enrolled_on,
            expected_completion=done.expected_completion,
            completed_on=self._completed_on,
            today=done.today,
            work_approved=done.work_approved,
            classroom_approved=done.classroom_approved,
            work_pending=done.work_pending,
            classroom_pending=done.classroom_pending,
            work_expected=round(done.work_expected, 2),
            classroom_expected=round(done.classroom_expected, 2),
            days_since_approved_hours=done.days_since_approved_hours,
            evaluation_due_on=done.evaluation_due_on,
            evaluation_overdue=done.evaluation_overdue,
            skills_signed_off=[s for p in done.periods for s in p.skills_signed_off],
            skills_pending=[s for p in done.periods for s in p.skills_pending],
            unmet=done.unmet,
            entries=list(self._entries),
            evaluations_done=self._evaluations_done,
            runs=self._runs,
            events=list(self._ladder.events),
        )

    def _answer(self) -> ApprenticeshipState:
        """What an update answers: the state without the entries and timeline.

        Update results are recorded in the history; the whole list of entries in each would
        grow a run's history quadratically (the ``state`` query has them).
        """
        return self.state().model_copy(update={"entries": [], "events": []})

    # -- updates ---------------------------------------------------------------------------

    def _known(self, entry: HoursEntry) -> bool | None:
        """An entry folded into the summary: True same content, False different, None unknown."""
        if entry.id in self._entry_ids and all(e.id != entry.id for e in self._entries):
            return self._entry_ids[entry.id] == _fingerprint(entry)
        return None

    def _logged(self) -> list[HoursEntry]:
        """The entries as logged (carried-over folded totals are not days' entries)."""
        return [e for e in self._entries if not e.id.startswith("~")]

    @workflow.signal
    def adopt_pack(self, signal: AdoptPackSignal) -> None:
        """A new pack version was deployed: the program's ``on_new_version`` decides.

        ``grandfather`` keeps this version to the end; ``rebase`` adopts the new one at the
        next period advancement, ``apply_now`` at once (both continue as new on it, keeping the
        hours, sign-offs and evaluations; a version without the program is not adopted).
        """
        if self._program is None:
            self._early_adopt = signal  # before the program loaded: handled right after
            return
        if signal.pack_hash == self._pack_hash:
            return
        rule = self.program.on_new_version
        if rule is ProgramMigration.GRANDFATHER:
            self._event(
                "pack_deployed",
                f"{signal.pack_hash[:12]} by {signal.deployed_by}: kept {self._pack_hash[:12]}"
                " (the program is grandfathered)",
            )
            return
        self._next_pack = signal.pack_hash
        self._adopt_now = rule is ProgramMigration.APPLY_NOW
        self._changed = True
        self._event(
            "pack_deployed",
            f"{signal.pack_hash[:12]} by {signal.deployed_by}: adopted "
            + ("now" if self._adopt_now else "at the next period advancement"),
        )

    async def _adopt(self) -> None:
        """Switch to the deployed version if it still has the program (checked first)."""
        new, self._next_pack, self._adopt_now = self._next_pack, None, False
        if new is None:
            return
        try:
            await workflow.execute_activity_method(
                ApprenticeshipActivities.program,
                ProgramRequest(pack_hash=new, program_id=self._input.program_id),
                start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY,
            )
        except ActivityError as error:
            self._event("pack_kept", f"{new[:12]} was not adopted: {error.cause}")
            return
        self._pack_hash = new
        self._event("pack_adopted", f"now pinned to {new[:12]}")

    @workflow.update
    async def log_hours(self, request: LogHours) -> ApprenticeshipState:
        """Record a pending hours entry (a same-id, same-content retry records nothing)."""
        await workflow.wait_condition(lambda: self._program is not None)
        entry = request.entry.model_copy(update={"status": EntryStatus.PENDING})
        if self._known(entry) is not None:
            return self._answer()
        check = check_entry(
            entry,
            self._logged(),
            status=self._enrolment.status,
            today=self._today(),
            enrolled_on=self._enrolment.enrolled_on,
        )
        if check.duplicate:
            return self._answer()
        self._entries.append(entry)
        self._entry_ids[entry.id] = _fingerprint(entry)
        await self._record_entry(
            RecordEntry(
                workflow_id=self._input.workflow_id,
                entry=entry,
                source=request.source,
                logged_by=request.actor,
                corrects=request.corrects,
                reason=request.reason,
            )
        )
        if request.corrects is not None:
            await self._review(
                request.corrects, False, request.actor, f"corrected by {entry.id}: {request.reason}"
            )
        self._event(
            "hours_logged",
            f"{entry.id}: {entry.hours:g} {entry.kind.value} hours on {entry.day.isoformat()}"
            f" by {request.actor}"
            + (f" (corrects {request.corrects})" if request.corrects else ""),
        )
        self._changed = True
        return self._answer()

    @log_hours.validator
    def _validate_hours(self, request: LogHours) -> None:
        if self._program is None:
            return  # the handler waits for it; check_entry does not need the program
        entry = request.entry.model_copy(update={"status": EntryStatus.PENDING})
        known = self._known(entry)
        if known is False:
            raise ValueError(
                f"entry {entry.id!r} is already recorded with different content; to correct"
                " it, log a new entry id with corrects and a reason"
            )
        if known:
            return
        check = check_entry(
            entry,
            self._logged(),
            status=self._enrolment.status,
            today=self._today(),
            enrolled_on=self._enrolment.enrolled_on,
        )
        errors = list(check.errors)
        if entry.id.startswith("~"):
            errors.append(f"entry ids starting with '~' are reserved; not {entry.id!r}")
        if request.corrects is not None:
            target = next((e for e in self._entries if e.id == request.corrects), None)
            if target is None:
                errors.append(f"entry {request.corrects!r} (to correct) is not recorded")
            if not (request.reason or "").strip():
                errors.append("a correction needs a reason")
        if errors:
            raise ValueError("; ".join(errors))

    @workflow.update
    async def review_hours(self, request: ReviewHours) -> ApprenticeshipState:
        """Approve or reject a pending entry; only approved hours count."""
        await workflow.wait_condition(lambda: self._program is not None)
        await self._review(request.entry_id, request.approve, request.actor, request.reason)
        self._changed = True
        return self._answer()

    @review_hours.validator
    def _validate_review(self, request: ReviewHours) -> None:
        entry = next((e for e in self._entries if e.id == request.entry_id), None)
        if entry is None:
            raise ValueError(
                f"entry {request.entry_id!r} is not recorded (or is no longer pending)"
            )
        withdrawing = request.withdraw and not request.approve
        if entry.status is not EntryStatus.PENDING and not (
            withdrawing and entry.status is EntryStatus.APPROVED
        ):
            raise ValueError(f"entry {request.entry_id!r} is already {entry.status.value}")
        if not request.approve and not (request.reason or "").strip():
            raise ValueError("a rejection needs a reason the apprentice can act on")

    async def _review(self, entry_id: str, approve: bool, actor: str, reason: str | None) -> None:
        index = next((i for i, e in enumerate(self._entries) if e.id == entry_id), None)
        if index is None:
            return
        status = EntryStatus.APPROVED if approve else EntryStatus.REJECTED
        # Only a withdrawal (a voided statement) rejects an approved entry: say so.
        was_approved = self._entries[index].status is EntryStatus.APPROVED
        entry = self._entries[index].model_copy(update={"status": status})
        self._entries[index] = entry
        await self._record_entry(
            RecordEntry(
                workflow_id=self._input.workflow_id,
                entry=entry,
                logged_by=actor,
                reviewed_by=actor,
                review_reason=reason,
                reviewed_at=workflow.now(),
            )
        )
        kind = "hours_withdrawn" if was_approved and not approve else f"hours_{status.value}"
        self._event(kind, f"{entry_id} by {actor}" + (f": {reason}" if reason else ""))

    @workflow.update
    async def evaluate(self, request: SubmitEvaluation) -> ApprenticeshipState:
        """Record the supervisor's evaluation; skills signed off count from its day."""
        await workflow.wait_condition(lambda: self._program is not None)
        if request.evaluation_id in self._evaluation_ids:
            return self._answer()
        self._evaluation_ids.add(request.evaluation_id)
        evaluation = request.evaluation
        self._evaluations.append(evaluation)
        self._evaluations_done += 1
        for skill in evaluation.skills_signed_off:
            self._signed_off.setdefault(skill, evaluation.day)
        await workflow.execute_activity_method(
            ApprenticeshipActivities.record_evaluation,
            RecordEvaluation(
                workflow_id=self._input.workflow_id,
                evaluation_id=request.evaluation_id,
                evaluation=evaluation,
                notes=request.notes,
                evaluator=request.actor,
            ),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        below = evaluation.score < self.program.evaluations.minimum_score
        self._event(
            "evaluated",
            f"{request.evaluation_id} by {request.actor}: score {evaluation.score}"
            + (" (below the minimum)" if below else "")
            + f", {len(evaluation.skills_signed_off)} skills signed off"
            + (", final" if evaluation.final else ""),
        )
        self._changed = True
        return self._answer()

    @evaluate.validator
    def _validate_evaluation(self, request: SubmitEvaluation) -> None:
        if self._enrolment.status is not EnrollmentStatus.ACTIVE:
            raise ValueError(
                f"the apprenticeship is {self._enrolment.status.value}: no evaluations"
            )
        if request.evaluation.day > self._today():
            raise ValueError(f"{request.evaluation.day.isoformat()} is in the future")
        if request.evaluation.day < self._enrolment.enrolled_on:
            raise ValueError("the evaluation is dated before the enrolment")

    @workflow.update
    async def change_enrolment(self, request: ChangeEnrolment) -> ApprenticeshipState:
        """Suspend (everything pauses), reinstate, or withdraw."""
        await workflow.wait_condition(lambda: self._program is not None)
        today = self._today()
        enrolment = self._enrolment
        if request.action is EnrolmentAction.SUSPEND:
            self._enrolment = enrolment.model_copy(
                update={"status": EnrollmentStatus.SUSPENDED, "suspended_on": today}
            )
        elif request.action is EnrolmentAction.REINSTATE:
            self._enrolment = enrolment.model_copy(
                update={
                    "status": EnrollmentStatus.ACTIVE,
                    "suspended_on": None,
                    "active_since": today,
                    "paused_days": enrolment.paused_until(today),
                }
            )
        else:
            self._enrolment = enrolment.model_copy(update={"status": EnrollmentStatus.WITHDRAWN})
        past = {"suspend": "suspended", "reinstate": "reinstated", "withdraw": "withdrawn"}
        word = past[request.action.value]
        self._event(word, f"by {request.actor}" + (f": {request.reason}" if request.reason else ""))
        await self._notice(
            f"{request.action.value[:3]}{_yymmdd(today)}",
            word,
            ["apprentice", "supervisor", "hr"],
            f"Apprenticeship {word}: {self.program.name}",
            f"The {self.program.name} of {self._input.person} was {word} on {today.isoformat()}"
            + (f": {request.reason}" if request.reason else "."),
        )
        self._changed = True
        return self._answer()

    @change_enrolment.validator
    def _validate_change(self, request: ChangeEnrolment) -> None:
        status = self._enrolment.status
        if status in (EnrollmentStatus.COMPLETED, EnrollmentStatus.WITHDRAWN):
            raise ValueError(f"the apprenticeship is {status.value}; nothing can change it")
        if request.action is EnrolmentAction.SUSPEND and status is EnrollmentStatus.SUSPENDED:
            raise ValueError("the apprenticeship is already suspended")
        if request.action is EnrolmentAction.REINSTATE and status is not EnrollmentStatus.SUSPENDED:
            raise ValueError("only a suspended apprenticeship can be reinstated")

    @workflow.update
    async def transfer_supervisor(self, request: TransferSupervisor) -> ApprenticeshipState:
        """A new supervising journeyworker from now on (notices go to them)."""
        await workflow.wait_condition(lambda: self._program is not None)
        before, self._supervisor = self._supervisor, request.supervisor
        self._event(
            "supervisor_transferred", f"{before} -> {request.supervisor} by {request.actor}"
        )
        self._changed = True
        return self._answer()

    @transfer_supervisor.validator
    def _validate_transfer(self, request: TransferSupervisor) -> None:
        if request.supervisor == self._input.person:
            raise ValueError("an apprentice cannot supervise themselves")
        if request.supervisor == self._supervisor:
            raise ValueError(f"{request.supervisor!r} already supervises this apprenticeship")

    # -- activities ------------------------------------------------------------------------

    async def _record_entry(self, request: RecordEntry) -> None:
        await workflow.execute_activity_method(
            ApprenticeshipActivities.record_entry,
            request,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )

    async def _notice(
        self,
        key: str,
        event: str,
        notify: list[str],
        subject: str,
        text: str,
        channels: list[str] | None = None,
    ) -> None:
        """Send a notice once: the key is remembered across runs, the ledger across retries."""
        if key in self._sent:
            return
        self._sent.append(key)
        lines = await workflow.execute_activity_method(
            ApprenticeshipActivities.notice,
            NoticeRequest(
                workflow_id=self._input.workflow_id,
                person=self._input.person,
                supervisor=self._supervisor,
                pack_hash=self._pack_hash,
                program_id=self._input.program_id,
                key=key,
                event=event,
                notify=notify,
                channels=channels or ["email"],
                subject=subject,
                text=text,
                fired_at=workflow.now(),
            ),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        self._event("notice", f"{key} {event}: " + "; ".join(lines))

    async def _decide(self) -> None:
        """Have the pinned pack's status rules decide, when this run lets them (patch)."""
        self._pack_decides = workflow.patched(PACK_STATUS_PATCH)
        if not self._pack_decides:
            return
        decision = await workflow.execute_activity_method(
            ApprenticeshipActivities.decide,
            DecideApprenticeship(
                workflow_id=self._input.workflow_id,
                person=self._input.person,
                pack_hash=self._pack_hash,
                facts=program_facts(self.program, self._progress()),
            ),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        self._pack_decision = None if decision is None else (decision.status, decision.rule)

    async def _record(self) -> None:
        await self._decide()
        state = self._answer()
        await workflow.execute_activity_method(
            ApprenticeshipActivities.record,
            RecordApprenticeship(
                workflow_id=self._input.workflow_id,
                state=state,
                program_name=self.program.name,
                as_of=workflow.now(),
            ),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        decided = (state.compliance_status, state.decided_by)
        if decided != self._decided:
            self._decided = decided
            self._event("status", f"{decided[0]} ({decided[1]}, pack {self._pack_hash[:12]})")

    # -- the run ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: ApprenticeshipInput) -> ApprenticeshipState:
        """Walk the apprenticeship until it is completed or withdrawn."""
        self._program = await workflow.execute_activity_method(
            ApprenticeshipActivities.program,
            ProgramRequest(pack_hash=input.pack_hash, program_id=input.program_id),
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        if self._early_adopt is not None:
            self.adopt_pack(self._early_adopt)
        if input.carried is None:
            self._event(
                "enrolled",
                f"{self.program.name} from {input.enrolled_on.isoformat()}, supervisor"
                f" {input.supervisor}, by {input.enrolled_by}",
            )
        else:
            self._event("continued", f"run {self._runs}: period {self._enrolment.period}")
        await self._record()
        while True:
            status = self._enrolment.status
            if status in (EnrollmentStatus.COMPLETED, EnrollmentStatus.WITHDRAWN):
                await workflow.wait_condition(workflow.all_handlers_finished)
                await self._record()
                return self.state()
            if self._adopt_now:
                await self._adopt()
                if self._pack_hash != self._input.pack_hash:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(self._carry())
            done = self._progress()
            if done.advancement_due:
                await self._advance(done)
                await self._adopt()
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carry())
            if await self._graduation_ready(done):
                await self._graduate()
                continue
            await self._stall(done)
            await self._evaluation(done)
            if self._changed:
                self._changed = False
                await self._record()
                continue
            if workflow.info().get_current_history_length() > MAX_HISTORY_EVENTS:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carry())
            wake = self._next_wake(self._progress())
            if await self._ladder.sleep_until(wake) is Wake.DEADLINE:
                # A wake-up (a stall rung, an evaluation due or overdue): time moved the
                # facts, so the pack decides again and the read model follows.
                self._changed = self._changed or self._pack_decides

    def _next_wake(self, done: Progress) -> datetime | None:
        """The next instant something can fall due without a message (None: none)."""
        if done.status is not EnrollmentStatus.ACTIVE:
            return None  # suspended: nothing runs until it is reinstated
        self._plan_stall(done)
        now = workflow.now()
        instants = [stage.fire_at for stage in self._ladder.stages if stage.fire_at > now]
        if done.evaluation_due_on is not None:
            for day in (
                done.evaluation_due_on,
                done.evaluation_due_on + timedelta(days=self.program.evaluations.grace_days + 1),
            ):
                if self._at(day) > now:
                    instants.append(self._at(day))
        return min(instants, default=None)

    def _plan_stall(self, done: Progress) -> None:
        """The stall ladder's rungs for the current run of days without approved hours.

        Labels are the ledger keys: ``s{yymmdd of the last approved day}:{rung}``, so a new
        stall (after hours resumed) has new rungs and a rung is sent once per stall.
        """
        since = done.today - timedelta(days=done.days_since_approved_hours)
        start = self._stall_start(done)
        self._ladder.stages = [
            LadderStage(
                label=f"s{_yymmdd(since)}:{index}",
                days_before_due=-(self.program.stall.after_days + step.after_days),
                fire_at=self._at(start + timedelta(days=step.after_days)),
            )
            for index, step in enumerate(self.program.stall.ladder)
        ]

    def _stall_start(self, done: Progress) -> date:
        return (
            done.today
            - timedelta(days=done.days_since_approved_hours)
            + timedelta(days=self.program.stall.after_days)
        )

    async def _stall(self, done: Progress) -> None:
        """The stall ladder: each rung once per stall; none once approved hours resume.

        Rungs that fell due together (after a restart, or a reinstatement) go out together.
        """
        if not done.stalled:
            return
        self._plan_stall(done)
        since = done.today - timedelta(days=done.days_since_approved_hours)
        for stage, step in zip(self._ladder.stages, self.program.stall.ladder, strict=True):
            if done.today < self._stall_start(done) + timedelta(days=step.after_days):
                break
            self._ladder.stage = stage.label
            await self._notice(
                stage.label,
                "stalled",
                [step.notify.value],
                f"No approved apprenticeship hours since {since.isoformat()}",
                f"{self.program.name}: {self._input.person} has had no approved hours for"
                f" {done.days_since_approved_hours} days (since {since.isoformat()}). Log and"
                " approve hours to resume.",
                [c.value for c in step.channels],
            )

    async def _evaluation(self, done: Progress) -> None:
        """Remind the supervisor when an evaluation is due; escalate it once overdue."""
        due = done.evaluation_due_on
        if due is None or not done.evaluation_due:
            return
        await self._notice(
            f"d{_yymmdd(due)}",
            "evaluation_due",
            ["supervisor"],
            "Apprentice evaluation due",
            f"An evaluation of {self._input.person} ({self.program.name}) is due on"
            f" {due.isoformat()}.",
        )
        if done.evaluation_overdue:
            await self._notice(
                f"e{_yymmdd(due)}",
                "evaluation_overdue",
                ["supervisors_manager", "supervisor"],
                "Apprentice evaluation overdue",
                f"The evaluation of {self._input.person} ({self.program.name}) due on"
                f" {due.isoformat()} is more than {self.program.evaluations.grace_days} days"
                f" late; supervisor {self._supervisor}.",
            )

    async def _advance(self, done: Progress) -> None:
        """Move to the next period and tell everyone its wage, once."""
        new = self._enrolment.period + 1
        period = self.program.periods[new - 1]
        self._enrolment = self._enrolment.model_copy(update={"period": new})
        self._event("advanced", f"period {new} ({period.name}) at {period.wage_percentage:g}%")
        await self._notice(
            f"adv:p{new}",
            "advanced",
            EVERYONE,
            f"Apprentice advanced to period {new}: wage {period.wage_percentage:g}%",
            f"{self._input.person} completed period {new - 1} of the {self.program.name} and"
            f" is now in period {new} ({period.name}), paid {period.wage_percentage:g}% of the"
            " journeyworker wage from today.",
        )
        self._changed = False
        await self._record()

    async def _graduation_ready(self, done: Progress) -> bool:
        if done.graduation_ready:
            return True
        certifications = [u for u in done.unmet if u.startswith("certification '")]
        if not done.unmet or len(certifications) != len(done.unmet):
            return False
        held = await workflow.execute_activity_method(
            ApprenticeshipActivities.certifications_held,
            self._input.person,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RETRY,
        )
        if held == self._held:
            return False
        self._held = held
        return self._progress().graduation_ready

    async def _graduate(self) -> None:
        today = self._today()
        awarded = await workflow.execute_activity_method(
            ApprenticeshipActivities.register_awards,
            AwardRequest(
                workflow_id=self._input.workflow_id,
                person=self._input.person,
                pack_hash=self._pack_hash,
                certification_ids=list(self.program.awards),
                issued_on=today,
            ),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RETRY,
        )
        self._enrolment = self._enrolment.model_copy(update={"status": EnrollmentStatus.COMPLETED})
        self._completed_on = today
        self._event("graduated", "; ".join(awarded) or "no certifications awarded")
        await self._notice(
            "graduated",
            "graduated",
            EVERYONE,
            f"Apprenticeship completed: {self.program.name}",
            f"{self._input.person} completed the {self.program.name} on {today.isoformat()}."
            + (f" Awarded: {'; '.join(awarded)}." if awarded else ""),
        )

    # -- LadderFamily: what the shared runner asks --------------------------------------------

    def closed(self) -> bool:
        """Completed or withdrawn: nothing more to wait for."""
        return self._enrolment.status in (EnrollmentStatus.COMPLETED, EnrollmentStatus.WITHDRAWN)

    async def record(self) -> None:
        """Decide the status and write the read models."""
        await self._record()

    def reminder(
        self, stage: LadderStage, *, late_notice: bool, event: str | None
    ) -> ReminderRequest:
        """Never asked: the runner sends nothing for an apprenticeship.

        Stall rungs reach the apprentice, their supervisor, the sponsor's contact and HR, who
        are not obligation recipients (``send_reminder`` knows the learner and their managers),
        so they go out through ``apprenticeship_notice`` (the same deliverer and ledger); the
        workflow has no ``redeliver`` signal, so the runner never re-sends one either.
        """
        raise AssertionError(f"stage {stage.label} goes out by apprenticeship_notice, not here")

    async def replan_zone(self, signal: ReplanSignal) -> None:
        """Instants follow the enrolment's UTC offset; the runner is never told of a zone."""

    async def interrupt(self) -> Wake | None:
        """Hours, reviews, evaluations, enrolment changes: the run loop looks again."""
        return Wake.REPLANNED if self._changed else None

    async def at_deadline(self) -> Wake | None:
        """The rung or evaluation instant passed: the run loop acts on it."""
        return None

    def waiting(self) -> bool:
        """Wake up when something changed."""
        return self._changed

    def _carry(self) -> ApprenticeshipInput:
        """The next run's input: this run's summary, approved hours folded (see Carried)."""
        last = max(self._evaluations, key=lambda e: e.day, default=None)
        folded: list[HoursEntry] = []
        for kind in HoursKind:
            approved = [
                e for e in self._entries if e.kind is kind and e.status is EntryStatus.APPROVED
            ]
            groups = (
                [e for e in approved if last is None or e.day <= last.day],
                [e for e in approved if last is not None and e.day > last.day],
            )
            for index, group in enumerate(groups):
                if group:
                    folded.append(
                        HoursEntry(
                            id=f"~{kind.value}-{index}-r{self._runs}",
                            day=max(e.day for e in group),
                            kind=kind,
                            hours=sum(e.hours for e in group),
                            status=EntryStatus.APPROVED,
                            description=f"{len(group)} approved entries carried over",
                        )
                    )
        pending = [e for e in self._entries if e.status is EntryStatus.PENDING]
        carried = Carried(
            period=self._enrolment.period,
            status=self._enrolment.status,
            active_since=self._enrolment.active_since,
            suspended_on=self._enrolment.suspended_on,
            paused_days=self._enrolment.paused_days,
            supervisor=self._supervisor,
            entries=folded + pending,
            entry_ids=self._entry_ids,
            last_evaluation=last,
            evaluations_done=self._evaluations_done,
            signed_off=self._signed_off,
            sent=self._sent,
            runs=self._runs + 1,
        )
        return self._input.model_copy(update={"carried": carried, "pack_hash": self._pack_hash})
