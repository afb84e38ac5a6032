"""ProjectReadinessWorkflow: one client project counting down to go-live."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.tracks import TrackActivities
    from domain.calendar import LadderStage
    from domain.contracts.obligation import ReminderRequest, ReplanSignal
    from domain.contracts.tracks import (
        COUNTDOWN_DAYS,
        GoLiveChange,
        ManagerLeft,
        ManagerReassigned,
        ProjectEvent,
        ProjectMessages,
        ProjectReadinessInput,
        ProjectReadinessState,
        ReadinessCheck,
        ReadinessRequest,
        ReadinessResult,
    )
    from domain.ids import BUILTIN_PACK
    from domain.kinds import ObligationKind

from workflows.ladder import ACTIVITY_TIMEOUT, RETRY, Ladder, Wake

__all__ = ["ProjectReadinessWorkflow"]

#: The project manager (``learner`` of the notice: it is about their project) and their manager.
NOTIFY = ["learner", "manager"]
CHANNELS = ["email", "in_app"]
#: Countdown stages go out at 09:00 UTC on their day.
STAGE_TIME = time(9, 0)


@workflow.defn
class ProjectReadinessWorkflow(ProjectMessages):
    """Counts a project down to go-live (business key ``project/{id}/readiness``).

    While the project is not ready, the project manager and their manager hear at 30, 14, 7
    and 1 days before go-live which tracks block (the shared ladder runner sends each stage;
    a countdown started late sends one notice for the stage it is in). Readiness is looked at
    when signalled (``check``), at every stage, and every ``check_every_hours`` (default 6) in
    the last 30 days (daily before); as soon as it is ready both are told once and the workflow
    ends. ``move_go_live`` re-plans the
    countdown for the new date (its stages are new ones: a stage already sent for the old date
    goes out again for the new one). At go-live the workflow ends, ready or not.
    """

    @workflow.init
    def __init__(self, input: ProjectReadinessInput) -> None:
        self._input = input
        self._go_live = input.go_live
        self._generation = 1
        self._ladder = Ladder(
            self,
            event_type=ProjectEvent,
            stages=self._plan(),
            offset=0,
            deferral_survives_replan=True,
        )
        self._ready = False
        self._over = False
        self._answer: ReadinessResult | None = None
        self._check = False
        self._change: GoLiveChange | None = None
        #: The project manager left: HR reassigns the project (the countdown's notices are
        #: about the manager, who gets none any more: see ``manager_left``).
        self._manager_left: str | None = None
        #: Who the countdown is about and sent to (HR reassigns it: ``reassign_manager``).
        self._manager = input.manager

    # -- messages ---------------------------------------------------------------------------

    @workflow.signal
    def check(self, signal: ReadinessCheck) -> None:
        """A completion landed: look at readiness now."""
        self._check = True

    @workflow.signal
    def move_go_live(self, signal: GoLiveChange) -> None:
        """The go-live date moved: re-plan the countdown."""
        self._change = signal

    @workflow.update
    def manager_left(self, signal: ManagerLeft) -> ProjectReadinessState:
        """The project manager left (the directory automation): flag it for HR to reassign."""
        self._manager_left = signal.manager
        self._ladder.event(
            "manager_left", f"{signal.manager} left (by {signal.actor}): HR reassigns the project"
        )
        return self.state()

    @manager_left.validator
    def _validate_manager_left(self, signal: ManagerLeft) -> None:
        if signal.manager != self._manager:
            raise ValueError(f"{signal.manager!r} does not manage this project")
        if self._manager_left is not None:
            raise ValueError(f"{signal.manager!r} is already flagged as having left")

    @workflow.update
    def reassign_manager(self, change: ManagerReassigned) -> ProjectReadinessState:
        """HR gave the project a new manager: the countdown goes to them; the flag clears."""
        before, self._manager = self._manager, change.manager
        self._manager_left = None
        self._ladder.event("manager_reassigned", f"{before} -> {change.manager} by {change.actor}")
        return self.state()

    @reassign_manager.validator
    def _validate_reassign(self, change: ManagerReassigned) -> None:
        if change.manager == self._manager:
            raise ValueError(f"{change.manager!r} already manages this project")

    @workflow.query
    def state(self) -> ProjectReadinessState:
        """The countdown as the workflow sees it now."""
        return ProjectReadinessState(
            project_id=self._input.project_id,
            go_live=self._go_live,
            ready=self._ready,
            blocking_tracks=list(self._answer.blocking_tracks) if self._answer else [],
            stages_sent=list(self._ladder.sent),
            events=list(self._ladder.events),
            manager_left=self._manager_left,
            manager=self._manager,
        )

    # -- main -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: ProjectReadinessInput) -> ProjectReadinessState:
        """Count down until ready or go-live."""
        ladder = self._ladder
        ladder.event("started", f"go-live {self._go_live.isoformat()}")
        await self._look()
        while not self._ready and not self._over:
            now = workflow.now()
            due = [s for s in ladder.stages if s.label not in ladder.sent and s.fire_at <= now]
            if due:
                for skipped in due[:-1]:
                    ladder.sent.append(skipped.label)
                    ladder.event("stage_skipped", f"{skipped.label} was before the countdown")
                await self._look()
                if not self._ready:
                    await ladder.send(due[-1], late_notice=len(due) > 1)
                continue
            end = self._go_live_at()
            if now >= end:
                self._over = True
                assert self._answer is not None
                ladder.event("go_live_reached", f"not ready: {self._answer.summary}")
                break
            upcoming = [s.fire_at for s in ladder.stages if s.label not in ladder.sent]
            # Hourly (``check_every_hours``) in the countdown's last 30 days, daily before.
            near = end - now <= timedelta(days=COUNTDOWN_DAYS[0])
            every = timedelta(hours=input.check_every_hours if near else 24)
            deadline = min([*upcoming, now + every, end])
            if await ladder.sleep_until(deadline) is Wake.DEADLINE:
                await self._look()
        if self._ready:
            stage = LadderStage(
                label=f"g{self._generation}:ready", days_before_due=0, fire_at=workflow.now()
            )
            await ladder.send(stage, event="go_live_ready")
        return self.state()

    async def _look(self) -> None:
        """Ask the store whether the project is ready (an activity: the workflow never reads)."""
        answer = await workflow.execute_activity_method(
            TrackActivities.check_project_readiness,
            ReadinessRequest(project_id=self._input.project_id, as_of=workflow.now()),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        if self._answer is None or answer.summary != self._answer.summary:
            self._ladder.event("ready" if answer.ready else "readiness", answer.summary)
        self._answer = answer
        self._ready = answer.ready

    def _go_live_at(self) -> datetime:
        return datetime.combine(self._go_live, time(0, 0), tzinfo=workflow.now().tzinfo)

    def _plan(self) -> list[LadderStage]:
        """The countdown stages for the current go-live date (labels carry the plan's number)."""
        tz = workflow.now().tzinfo
        return [
            LadderStage(
                label=f"g{self._generation}:-{days}d",
                days_before_due=days,
                fire_at=datetime.combine(self._go_live - timedelta(days=days), STAGE_TIME, tz),
            )
            for days in COUNTDOWN_DAYS
        ]

    # -- the ladder's questions (workflows.ladder.LadderFamily) -----------------------------

    def closed(self) -> bool:
        """Ready or past go-live: nothing more to count down."""
        return self._ready or self._over

    async def record(self) -> None:
        """Nothing to record per stage: readiness is read from the store, not written."""

    def reminder(
        self, stage: LadderStage, *, late_notice: bool, event: str | None = None
    ) -> ReminderRequest:
        """The notice of one countdown stage (or, ``go_live_ready``, the announcement)."""
        answer = self._answer
        blocking = ", ".join(answer.blocking_tracks) if answer else ""
        name = self._input.name
        title = name if event == "go_live_ready" else f"{name}, blocked by {blocking}"
        today = workflow.now().date()
        return ReminderRequest(
            workflow_id=workflow.info().workflow_id,
            person=self._manager,
            kind=ObligationKind.TRAINING,
            requirement_title=title,
            due_date=self._go_live,
            stage=stage.label,
            days_before_due=(self._go_live - today).days,
            pack_hash=BUILTIN_PACK,
            fired_at=workflow.now(),
            late_notice=late_notice,
            notify=NOTIFY,
            channels=CHANNELS,
            event=event or "go_live_blocked",
        )

    async def replan_zone(self, signal: ReplanSignal) -> None:
        """Countdown stages are planned in UTC; a zone change changes nothing."""

    async def interrupt(self) -> Wake | None:
        """A go-live change re-plans; a completion makes it look at readiness now."""
        if self._change is not None:
            change, self._change = self._change, None
            old = self._go_live
            self._go_live = change.go_live
            self._generation += 1
            self._ladder.stages = self._plan()
            self._ladder.event(
                "go_live_moved",
                f"{old.isoformat()} -> {change.go_live.isoformat()} by {change.actor}",
            )
            return Wake.REPLANNED
        if self._check:
            self._check = False
            await self._look()
            return Wake.REPLANNED if self._ready else Wake.AGAIN
        return None

    async def at_deadline(self) -> Wake | None:
        """Nothing of its own at a deadline."""
        return None

    def waiting(self) -> bool:
        """A completion or a go-live change wakes the countdown."""
        return self._check or self._change is not None
