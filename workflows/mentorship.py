"""MentorshipWorkflow: one mentoring relationship, from the request to its end.

One workflow per relationship under the business key ``mentorship/{mentee}/{mentor}/{n}``. The
pack's ``mentorship:`` section is frozen into the input at request time.

- ``pending``: the mentor is told of the request and reminded halfway to its expiry; nobody
  answering within ``request_expiry_days`` makes it ``expired`` and the mentee is told and shown
  the next best matches (a decline shows them too).
- ``accept`` claims one of the mentor's slots in the store (one conditional UPDATE, so two
  acceptances racing for the last slot give exactly one ``active`` relationship; the other
  acceptance is refused with the reason and its request stays ``pending``).
- ``active``: a session is expected every ``session_cadence_days``; when none is logged, the
  pack's nudge ladder runs (mentee, then mentor, then the coordinator), each rung once per
  cadence period (the ledger key carries the period), and a logged session stops it. Action
  items are reminded to their assignee on their due date; feedback is asked of both sides at
  the midpoint and at the end date, after which the relationship waits for the end feedback
  (at most ``feedback.due_within_days``) and completes.
- ``complete`` or ``cancel`` (with a reason) end it early; either gives the slot back.
- ``mentor_left`` (the directory automation, when the mentor leaves the organisation): an
  active relationship is ``ended``, a pending request ``expired`` at once, both with reason
  ``mentor_left``; the mentee alone is told (one ``mentor-left`` message, the ledger keeps it
  to one) and shown the next best matches, as on expiry.

The runner of :mod:`workflows.ladder` does the waiting (``sleep_until``: timers, updates and
bounced-message re-sends), the sending (``deliver``: the shared ``send_reminder`` activity, its
recipients, channels, quiet hours and exactly-once ledger) and the timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.mentorship import MentorshipActivities
    from domain import LadderStage, ObligationKind, add_months
    from domain.contracts.mentorship import (
        FINAL,
        MENTOR_LEFT,
        AcceptRequest,
        ActionItem,
        CancelMentorship,
        ClaimRequest,
        ClaimResult,
        CompleteMentorship,
        DeclineRequest,
        FeedbackPhase,
        FeedbackRequest,
        LeaveSignal,
        MentorLeft,
        MentorshipEvent,
        MentorshipInput,
        MentorshipRecord,
        MentorshipState,
        MentorshipStatus,
        NextMatchesRequest,
        SessionLog,
        message_event,
    )
    from domain.contracts.obligation import (
        AcknowledgeSignal,
        ObligationMessages,
        RedeliverSignal,
        ReminderRequest,
        ReplanSignal,
    )
    from domain.contracts.packs import AdoptPackSignal

from workflows.ladder import ACTIVITY_TIMEOUT, RETRY, Ladder, Wake

#: Workflows started (or replayed past an acceptance refused) with this patch tell the mentee why
#: their request lost the mentor's slot and suggest other mentors; older histories did not.
RACE_NOTICE_PATCH = "mentorship-race-notice"
#: Channels of the messages that are not nudges (requests, answers, feedback, action items).
NOTICE_CHANNELS = ["email", "in_app"]
# Stage labels fit the ledger's 16 characters: ``request``, ``request-2`` (the reminder),
# ``s{n}:mentee|mentor|coordinator`` (nudges of the n-th cadence period), ``fb-midpoint``,
# ``fb-end``, ``action-{i}``, and the status notices (``accepted``, ``expired``...).


@dataclass(frozen=True)
class _Mark:
    """A moment the workflow acts at."""

    at: datetime
    kind: str  # reminder, expire, nudge, midpoint, end, wrap_up, action
    index: int = 0


def _end_of(day: date) -> datetime:
    """The end of ``day`` in UTC (a session held that day counts from then)."""
    return datetime.combine(day + timedelta(days=1), time.min, UTC)


@workflow.defn
class MentorshipWorkflow(ObligationMessages):
    """Carries one mentoring relationship through request, cadence, feedback and its end.

    Updates: ``accept``, ``decline``, ``log_session``, ``feedback``, ``complete``, ``cancel``,
    ``mentor_left``.
    Signals: those of every obligation family (``redeliver`` re-sends a bounced message) and
    ``leave`` (the directory: a side on leave holds the nudges).
    Query: ``state``.
    """

    @workflow.init
    def __init__(self, input: MentorshipInput) -> None:
        self._input = input
        self._terms = input.terms
        self._ladder = Ladder(
            self, event_type=MentorshipEvent, stages=[], offset=0, deferral_survives_replan=True
        )
        self._status = MentorshipStatus.PENDING
        self._requested_at = workflow.now()
        self._expires_at = self._requested_at + timedelta(days=self._terms.request_expiry_days)
        self._started_at: datetime | None = None
        self._ends_at: datetime | None = None
        self._ended_at: datetime | None = None
        self._reason: str | None = None
        self._sessions = 0
        self._last_session_on: date | None = None
        #: The cadence counts from here: the acceptance, then the latest session.
        self._cadence_from: datetime | None = None
        self._action_items: list[ActionItem] = []
        self._feedback: list[tuple[str, FeedbackPhase, int]] = []
        self._next_matches: list[str] = []
        self._done: set[tuple[str, int]] = set()  # marks already acted on
        #: The message being sent (the runner asks :meth:`reminder` for it).
        self._outgoing: ReminderRequest | None = None
        self._accepting = False
        self._holds_slot = False
        self._wrapping_up_until: datetime | None = None
        #: Something changed (an answer, a session): look at the marks again.
        self._changed = False
        #: The read model's row exists (the slot is claimed on it).
        self._recorded = False
        #: The mentee was told their request lost the mentor's slot (once per request).
        self._race_told = False
        #: Sides on leave (the directory automation): nudges and action items wait.
        self._away: set[str] = set()

    # -- updates ----------------------------------------------------------------------------

    @workflow.update
    async def accept(self, request: AcceptRequest) -> MentorshipState:
        """The mentor accepts: claim a slot, then the relationship is ``active``.

        Raises:
            ApplicationError: ``NoFreeSlot`` when the mentor has no free slot (or stopped
                accepting); the request stays pending.
        """
        self._accepting = True
        try:
            # The slot is recorded on the relationship's row: it must be written first.
            await workflow.wait_condition(lambda: self._recorded)
            claim: ClaimResult = await workflow.execute_activity_method(
                MentorshipActivities.claim_slot,
                ClaimRequest(workflow_id=self._input.workflow_id, mentor=self._input.mentor),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
            if not claim.claimed:
                reason = claim.reason or "the mentor has no free slot"
                self._ladder.note("accept_refused", reason)
                if not self._race_told and workflow.patched(RACE_NOTICE_PATCH):
                    await self._tell_race_lost(reason)
                raise ApplicationError(
                    f"cannot accept: {reason}; the request stays pending", type="NoFreeSlot"
                )
            self._holds_slot = True
            now = workflow.now()
            self._status = MentorshipStatus.ACTIVE
            self._started_at = self._cadence_from = now
            ends_on = add_months(now.date(), self._input.duration_months)
            self._ends_at = datetime.combine(ends_on, now.timetz())
            self._ladder.event("accepted", f"by {request.by}; ends {ends_on.isoformat()}")
            await self._record()
            await self._notice(self._input.mentee, "accepted", self._ends_at.date())
            self._changed = True
            return self.state()
        finally:
            self._accepting = False

    @accept.validator
    def _validate_accept(self, request: AcceptRequest) -> None:
        self._refuse_unless(MentorshipStatus.PENDING, "accepted")
        if self._accepting:
            raise ValueError("an acceptance of this request is already under way")

    @workflow.update
    async def decline(self, request: DeclineRequest) -> MentorshipState:
        """The mentor declines (the reason, if any, is shown to the mentee)."""
        self._status = MentorshipStatus.DECLINED
        self._reason = request.reason
        self._ladder.event("declined", f"by {request.by}: {request.reason or 'no reason given'}")
        self._changed = True
        return self.state()

    @decline.validator
    def _validate_decline(self, request: DeclineRequest) -> None:
        self._refuse_unless(MentorshipStatus.PENDING, "declined")
        if self._accepting:
            raise ValueError("the request is being accepted")

    @workflow.update
    async def log_session(self, log: SessionLog) -> MentorshipState:
        """One session held: the cadence starts again from its day; its action items are kept."""
        self._sessions += 1
        if self._last_session_on is None or log.held_on > self._last_session_on:
            self._last_session_on = log.held_on
        held = min(_end_of(log.held_on), workflow.now())
        if self._cadence_from is None or held > self._cadence_from:
            self._cadence_from = held
        self._action_items.extend(log.action_items)
        # Listed up to the runner's cap, then counted: a flood cannot grow the state unbounded.
        self._ladder.note(
            "session_logged",
            f"#{self._sessions} on {log.held_on.isoformat()} by {log.by}"
            f" ({log.duration_minutes} min, {log.format.value});"
            f" {len(log.action_items)} action item(s)",
        )
        self._changed = True
        return self.state()

    @log_session.validator
    def _validate_session(self, log: SessionLog) -> None:
        self._refuse_unless(MentorshipStatus.ACTIVE, "logged a session")
        today = workflow.now().date()
        if log.held_on > today:
            raise ValueError(f"held_on {log.held_on} is in the future (today is {today})")
        if self._started_at is not None and log.held_on < self._started_at.date():
            raise ValueError(
                f"held_on {log.held_on} is before the mentorship began ({self._started_at.date()})"
            )
        for item in log.action_items:
            if item.assignee not in {"mentee", "mentor", self._input.mentee, self._input.mentor}:
                raise ValueError(
                    f"action item assignee {item.assignee!r} is neither side; use 'mentee',"
                    " 'mentor' or one of their person ids"
                )

    @workflow.update
    async def feedback(self, request: FeedbackRequest) -> MentorshipState:
        """One side's midpoint or end feedback (the mentee's rating feeds the track record)."""
        side = self._side(request.by)
        self._feedback.append((side, request.phase, request.rating))
        self._ladder.event("feedback", f"{request.phase.value} from the {side}: {request.rating}/5")
        self._changed = True
        return self.state()

    @feedback.validator
    def _validate_feedback(self, request: FeedbackRequest) -> None:
        self._refuse_unless(MentorshipStatus.ACTIVE, "taken feedback")
        side = self._side(request.by)
        if any(s == side and p == request.phase for s, p, _ in self._feedback):
            raise ValueError(f"the {side} already gave {request.phase.value} feedback")

    @workflow.update
    async def complete(self, request: CompleteMentorship) -> MentorshipState:
        """Complete the relationship now (the slot is given back)."""
        self._finish(MentorshipStatus.COMPLETED, request.note, f"by {request.by}")
        return self.state()

    @complete.validator
    def _validate_complete(self, request: CompleteMentorship) -> None:
        self._refuse_unless(MentorshipStatus.ACTIVE, "completed")

    @workflow.update
    async def cancel(self, request: CancelMentorship) -> MentorshipState:
        """End the relationship early, pending or active, with a reason."""
        self._finish(MentorshipStatus.CANCELLED, request.reason, f"by {request.by}")
        return self.state()

    @cancel.validator
    def _validate_cancel(self, request: CancelMentorship) -> None:
        if self._status not in (MentorshipStatus.PENDING, MentorshipStatus.ACTIVE):
            raise ValueError(f"the mentorship is {self._status.value}; it cannot be cancelled")
        if self._accepting:
            raise ValueError("the request is being accepted; try again in a moment")

    @workflow.update
    async def mentor_left(self, request: MentorLeft) -> MentorshipState:
        """The mentor left: an active relationship ends, a pending request expires now."""
        if self._status is MentorshipStatus.PENDING:
            self._status = MentorshipStatus.EXPIRED
            self._reason = MENTOR_LEFT
            self._ended_at = workflow.now()
            self._ladder.event("expired", f"by {request.by}: {MENTOR_LEFT}")
            self._changed = True
        else:
            self._finish(MentorshipStatus.ENDED, MENTOR_LEFT, f"by {request.by}")
        return self.state()

    @mentor_left.validator
    def _validate_mentor_left(self, request: MentorLeft) -> None:
        if self._status not in (MentorshipStatus.PENDING, MentorshipStatus.ACTIVE):
            raise ValueError(f"the mentorship is {self._status.value}; it has ended already")
        if self._accepting:
            raise ValueError("the request is being accepted; try again in a moment")

    # -- signals every family answers -------------------------------------------------------

    @workflow.signal
    def acknowledge(self, signal: AcknowledgeSignal) -> None:
        """Nothing to acknowledge in a mentorship (kept so every family answers it)."""

    @workflow.signal
    def adopt_pack(self, signal: AdoptPackSignal) -> None:
        """The policy was frozen at request time: a newer pack applies to new requests."""

    @workflow.signal
    def redeliver(self, signal: RedeliverSignal) -> None:
        """A message bounced: the runner re-sends it (ledger: sent parts are no-ops)."""
        self._ladder.queue_redelivery(signal)

    @workflow.signal
    def replan(self, signal: ReplanSignal) -> None:
        """Instants are UTC here; a time-zone change needs no re-plan."""

    @workflow.signal
    def leave(self, signal: LeaveSignal) -> None:
        """One side went on leave (nudges and action items wait) or came back.

        When the last side on leave is back, the session cadence counts from now and action
        items whose day fell in the leave are not reminded late. Repeats are no-ops.
        """
        if self.closed() or signal.person not in (self._input.mentee, self._input.mentor):
            return
        if signal.on_leave:
            if signal.person in self._away:
                return
            self._away.add(signal.person)
            self._ladder.event(
                "paused",
                f"{signal.person} on leave (by {signal.actor}): session nudges and action-item"
                " reminders wait",
            )
        else:
            if signal.person not in self._away:
                return
            self._away.discard(signal.person)
            if self._away:
                return
            now = workflow.now()
            if self._status is MentorshipStatus.ACTIVE and self._cadence_from is not None:
                self._cadence_from = now
            for i, item in enumerate(self._action_items):
                if datetime.combine(item.due_on, time(9), UTC) <= now:
                    self._done.add(("action", i))
            self._ladder.event(
                "resumed", f"{signal.person} back (by {signal.actor}): the cadence counts from now"
            )
        self._changed = True

    @workflow.query
    def state(self) -> MentorshipState:
        """The relationship now, with its timeline."""
        return MentorshipState(
            workflow_id=self._input.workflow_id,
            mentee=self._input.mentee,
            mentor=self._input.mentor,
            status=self._status,
            type=self._input.type,
            goals=list(self._input.goals),
            duration_months=self._input.duration_months,
            requested_at=self._requested_at,
            expires_at=self._expires_at,
            started_at=self._started_at,
            ends_at=self._ends_at,
            ended_at=self._ended_at,
            reason=self._reason,
            sessions=self._sessions,
            last_session_on=self._last_session_on,
            next_session_due=self._session_due(),
            feedback=[f"{p.value} {s} {r}" for s, p, r in self._feedback],
            next_matches=list(self._next_matches),
            events=list(self._ladder.events),
        )

    # -- run --------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: MentorshipInput) -> MentorshipState:
        """Wait for an answer, then keep the cadence until the relationship ends."""
        self._ladder.event(
            "requested",
            f"{input.mentee} asked {input.mentor} ({input.type.value}, {input.duration_months}"
            f" months); expires {self._expires_at.date().isoformat()}",
        )
        await self._record()
        self._recorded = True
        if self._status is MentorshipStatus.PENDING:  # not answered already
            await self._notice(input.mentor, "request", self._expires_at.date())
        while not self.closed():
            mark = self._next_mark()
            wake = await self._ladder.sleep_until(mark.at if mark else None)
            if wake is Wake.DEADLINE and mark is not None:
                await self._act(mark)
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._close()
        return self.state()

    def _next_mark(self) -> _Mark | None:
        marks: list[_Mark] = []
        if self._status is MentorshipStatus.PENDING:
            half = self._terms.request_expiry_days // 2
            if half > 0:
                marks.append(_Mark(self._requested_at + timedelta(days=half), "reminder"))
            marks.append(_Mark(self._expires_at, "expire"))
        elif self._status is MentorshipStatus.ACTIVE:
            marks += self._active_marks()
        pending = [m for m in marks if (m.kind, m.index) not in self._done]
        return min(pending, key=lambda m: m.at) if pending else None

    def _active_marks(self) -> list[_Mark]:
        assert self._started_at is not None and self._ends_at is not None
        marks: list[_Mark] = []
        if self._wrapping_up_until is not None:
            # Both sides' end feedback in: complete now rather than at the deadline.
            ends = {side for side, phase, _ in self._feedback if phase is FeedbackPhase.END}
            at = workflow.now() if ends == {"mentee", "mentor"} else self._wrapping_up_until
            return [_Mark(at, "wrap_up")]
        due = self._session_due() if not self._away else None
        if due is not None:
            # One period per cadence start: a new session starts a new period (new keys).
            period = self._sessions
            for rung, step in enumerate(self._terms.nudges):
                marks.append(
                    _Mark(due + timedelta(days=step.after_days), "nudge", period * 100 + rung)
                )
        if self._terms.feedback_midpoint:
            marks.append(
                _Mark(self._started_at + (self._ends_at - self._started_at) / 2, "midpoint")
            )
        marks.append(_Mark(self._ends_at, "end"))
        if not self._away:
            for i, item in enumerate(self._action_items):
                marks.append(_Mark(datetime.combine(item.due_on, time(9), UTC), "action", i))
        return marks

    async def _act(self, mark: _Mark) -> None:
        self._done.add((mark.kind, mark.index))
        if mark.kind == "reminder":
            await self._notice(self._input.mentor, "request-2", self._expires_at.date())
        elif mark.kind == "expire":
            await workflow.wait_condition(lambda: not self._accepting)
            if self._status is MentorshipStatus.PENDING:
                self._status = MentorshipStatus.EXPIRED
                self._reason = f"no answer within {self._terms.request_expiry_days} days"
                self._ladder.event("expired", self._reason)
        elif mark.kind == "nudge":
            await self._nudge(mark)
        elif mark.kind == "end" and not self._terms.feedback_end:
            self._finish(MentorshipStatus.COMPLETED, "end date reached", "at the end date")
        elif mark.kind in ("midpoint", "end"):
            assert self._ends_at is not None
            due = (workflow.now() + timedelta(days=self._terms.feedback_due_within_days)).date()
            for person in (self._input.mentee, self._input.mentor):
                await self._notice(person, f"fb-{mark.kind}", due)
            self._ladder.event("feedback_requested", f"{mark.kind} feedback due {due.isoformat()}")
            if mark.kind == "end":
                self._wrapping_up_until = workflow.now() + timedelta(
                    days=self._terms.feedback_due_within_days
                )
        elif mark.kind == "wrap_up":
            self._finish(MentorshipStatus.COMPLETED, "end date reached", "at the end date")
        elif mark.kind == "action":
            item = self._action_items[mark.index]
            who = self._assignee(item)
            await self._notice(who, f"action-{mark.index + 1}", item.due_on)
            self._ladder.event("action_item_reminded", f"{item.description!r} to {who}")

    async def _nudge(self, mark: _Mark) -> None:
        period, rung = divmod(mark.index, 100)
        step = self._terms.nudges[rung]
        due = self._session_due()
        assert due is not None
        person = self._input.mentor if step.notify == "mentor" else self._input.mentee
        notify = ["hr"] if step.notify == "coordinator" else ["learner"]
        await self._send(
            self._request(
                person,
                f"s{period}:{step.notify}",
                due.date(),
                notify=notify,
                channels=list(step.channels),
            )
        )
        self._ladder.event(
            "nudge_sent",
            f"no session since {(self._cadence_from or due).date().isoformat()}:"
            f" {step.notify} nudged",
        )

    async def _tell_race_lost(self, reason: str) -> None:
        """The mentee is told why the acceptance failed and shown the next best mentors.

        Once per request (the flag, and the ledger below it): a second refused acceptance of
        the same request sends nothing more. The request stays pending: a slot may free up.
        """
        self._race_told = True
        self._ladder.event("slot_lost", f"{reason}; the request stays pending")
        await self._suggest()
        await self._send(
            self._request(
                self._input.mentee,
                "race-lost",
                self._expires_at.date(),
                detail=reason,
            )
        )

    async def _suggest(self) -> None:
        """The mentee's next best mentors, this one left out (shown in the state)."""
        self._next_matches = await workflow.execute_activity_method(
            MentorshipActivities.next_matches,
            NextMatchesRequest(
                mentee=self._input.mentee,
                exclude=[self._input.mentor],
                pack_hash=self._input.pack_hash,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        self._ladder.event(
            "next_matches", ", ".join(self._next_matches) or "no other mentor matches now"
        )

    async def _close(self) -> None:
        if self._holds_slot:
            await workflow.execute_activity_method(
                MentorshipActivities.release_slot,
                ClaimRequest(workflow_id=self._input.workflow_id, mentor=self._input.mentor),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
            )
            self._holds_slot = False
        mentor_left = self._reason == MENTOR_LEFT and self._status in (
            MentorshipStatus.EXPIRED,
            MentorshipStatus.ENDED,
        )
        if self._status in (MentorshipStatus.EXPIRED, MentorshipStatus.DECLINED) or mentor_left:
            await self._suggest()
        self._ended_at = self._ended_at or workflow.now()
        await self._record()
        if mentor_left:
            # Only the mentee: the mentor has left. One message, pending or active.
            await self._notice(self._input.mentee, "mentor-left", self._ended_at.date())
            return
        told = [self._input.mentee]
        if self._status in (MentorshipStatus.COMPLETED, MentorshipStatus.CANCELLED):
            told.append(self._input.mentor)
        for person in told:
            await self._notice(person, self._status.value, self._ended_at.date())

    # -- helpers ----------------------------------------------------------------------------

    def _finish(self, status: MentorshipStatus, reason: str | None, how: str) -> None:
        self._status = status
        self._reason = reason
        self._ended_at = workflow.now()
        self._ladder.event(status.value, f"{how}: {reason}" if reason else how)
        self._changed = True

    def _session_due(self) -> datetime | None:
        if self._status is not MentorshipStatus.ACTIVE or self._cadence_from is None:
            return None
        return self._cadence_from + timedelta(days=self._terms.session_cadence_days)

    def _side(self, person: str) -> str:
        if person == self._input.mentee:
            return "mentee"
        if person == self._input.mentor:
            return "mentor"
        raise ValueError(f"{person!r} is neither the mentee nor the mentor of this mentorship")

    def _assignee(self, item: ActionItem) -> str:
        if item.assignee == "mentee":
            return self._input.mentee
        if item.assignee == "mentor":
            return self._input.mentor
        return item.assignee

    def _refuse_unless(self, status: MentorshipStatus, what: str) -> None:
        if self._status is not status:
            raise ValueError(
                f"the mentorship is {self._status.value}; only a {status.value} one can be {what}"
            )

    def _request(
        self,
        person: str,
        stage: str,
        due: date,
        *,
        notify: list[str] | None = None,
        channels: list[str] | None = None,
        detail: str | None = None,
    ) -> ReminderRequest:
        now = workflow.now()
        return ReminderRequest(
            workflow_id=self._input.workflow_id,
            person=person,
            kind=ObligationKind.MENTORSHIP,
            requirement_title=f"Mentorship ({self._input.type.value.replace('_', ' ')})",
            due_date=due,
            stage=stage,
            days_before_due=(due - now.date()).days,
            pack_hash=self._input.pack_hash,
            fired_at=now,
            notify=notify or ["learner"],
            channels=channels or NOTICE_CHANNELS,
            # The per-stage template and wording (notifications/templates/mentorship).
            event=message_event(stage),
            detail=detail,
        )

    async def _notice(self, person: str, stage: str, due: date) -> None:
        await self._send(self._request(person, stage, due))

    async def _send(self, request: ReminderRequest) -> None:
        """Send one message through the runner (the ledger, and quiet hours).

        A recipient in quiet hours gets it later: the runner waits, then sends again, and what
        already went out is a ledger no-op.
        """
        self._outgoing = request
        stage = LadderStage(
            label=request.stage,
            days_before_due=request.days_before_due,
            fire_at=request.fired_at,
        )
        # A notice (``event``): the runner neither counts it as a ladder stage nor re-records.
        await self._ladder.send(stage, event=request.stage)
        self._outgoing = None

    async def _record(self) -> None:
        await workflow.execute_activity_method(
            MentorshipActivities.record_mentorship,
            MentorshipRecord(
                workflow_id=self._input.workflow_id,
                mentee=self._input.mentee,
                mentor=self._input.mentor,
                status=self._status,
                type=self._input.type,
                duration_months=self._input.duration_months,
                requested_at=self._requested_at,
                as_of=workflow.now(),
                started_at=self._started_at,
                ended_at=self._ended_at,
                reason=self._reason,
                goals=list(self._input.goals),
                milestones=list(self._input.milestones),
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )

    # -- LadderFamily -----------------------------------------------------------------------

    def closed(self) -> bool:
        """The relationship ended (completed, cancelled, declined, expired, ended)."""
        return self._status in FINAL

    async def record(self) -> None:
        """Write the read model."""
        await self._record()

    def reminder(
        self, stage: LadderStage, *, late_notice: bool, event: str | None
    ) -> ReminderRequest:
        """The message being sent; a bounced one the runner re-sends goes to the mentee."""
        if self._outgoing is not None and self._outgoing.stage == stage.label:
            return self._outgoing
        return self._request(self._input.mentee, stage.label, stage.fire_at.date())

    async def replan_zone(self, signal: ReplanSignal) -> None:
        """Instants are UTC: nothing to re-plan."""

    async def interrupt(self) -> Wake | None:
        """An answer, a session or feedback arrived: look at the marks again."""
        if self._changed:
            self._changed = False
            return Wake.REPLANNED
        return None

    async def at_deadline(self) -> Wake | None:
        """The mark's instant passed: the run loop acts on it."""
        return None

    def waiting(self) -> bool:
        """Wake up when something changed."""
        return self._changed
