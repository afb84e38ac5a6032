"""TrackCompletedWorkflow: the learner is told, once, that their track is complete."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.assignment import ObligationActivities
    from domain.contracts.obligation import ReminderRequest, ReminderResult
    from domain.contracts.tracks import TRACK_COMPLETED_WORKFLOW, TrackCompletedNotice
    from domain.ids import BUILTIN_PACK
    from domain.kinds import ObligationKind

from workflows.ladder import ACTIVITY_TIMEOUT, RETRY

__all__ = ["NOTICE_STAGE", "TrackCompletedWorkflow"]

#: The ledger stage of the notice (the key is the workflow id, this stage and the channel).
NOTICE_STAGE = "track_completed"
#: Quiet hours postpone the notice; after this many postponements it is given up (logged).
MAX_DEFERRALS = 10


@workflow.defn(name=TRACK_COMPLETED_WORKFLOW)
class TrackCompletedWorkflow:
    """Sends the "your track is complete" notice (business key ``track/{id}/{person}/completed``).

    Started when a track's completion is recorded (by the course assignment that completed it,
    by an enrolment that completes at once, or by the nightly reconciliation for completions
    nobody told yet). It runs ``send_reminder``, the reminders' own activity: recipients,
    preferences, the ledger (its key makes a retried or replayed send a no-op) and quiet hours,
    which postpone it (the workflow sleeps until they end and sends then).
    """

    @workflow.run
    async def run(self, notice: TrackCompletedNotice) -> list[str]:
        """Send the notice to the learner (email and in-app); the deliveries, one line each."""
        request = ReminderRequest(
            workflow_id=workflow.info().workflow_id,
            person=notice.person,
            kind=ObligationKind.TRAINING,
            requirement_title=notice.track_name,
            due_date=notice.issued_on,
            stage=NOTICE_STAGE,
            days_before_due=0,
            pack_hash=BUILTIN_PACK,
            fired_at=workflow.now(),
            notify=["learner"],
            channels=["email", "in_app"],
            event=NOTICE_STAGE,
            detail=(
                f"Your certificate's verification code is {notice.certificate_code};"
                f" anyone can check it at {notice.verify_url}"
            )[:300],
        )
        deliveries: list[str] = []
        for _ in range(MAX_DEFERRALS):
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
        workflow.logger.warning("track completion notice postponed too often; given up")
        return deliveries
