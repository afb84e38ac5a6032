"""BulkAssignWorkflow: assign one requirement to everyone a selector matches.

Design (see ARCHITECTURE.md, "Fan-out limits"): no child workflows. The workflow

1. runs ``resolve_bulk_targets`` once: the sorted external ids of the active people the
   selector matches, the due date and the pinned pack hash (all recorded in the history, so
   the run is reproducible even if the directory or the active pack changes meanwhile);
2. walks that list in windows of :data:`WINDOW` people, one ``start_bulk_assignments``
   activity per window. The activity starts each person's ``AssignmentWorkflow`` with its
   deterministic business-key id (``assignment/{person}/{requirement}/1``), 50 at a time, and
   heartbeats its offset and counts so a retried attempt resumes where the last one stopped.
   A person who already has the obligation is *skipped* (Temporal rejects the duplicate id);
3. adds each window's counts to its own :class:`BulkProgress`, readable at any time through
   the ``progress`` query, and continues as new when the history grows large.

10,000 people are 20 activity calls (~130 history events). The target list travels in the
history (and in a continue-as-new input): ~15 bytes per person, fine up to ~100,000 people.
"""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from duly.domain import BoundedDate, ExternalId

#: People per ``start_bulk_assignments`` activity call (one progress update per window).
WINDOW = 500
#: First errors kept in :class:`BulkProgress` (the rest are only counted).
MAX_ERRORS = 20


def bulk_workflow_id(bulk_id: str) -> str:
    """The business-key workflow id of a bulk job."""
    return f"bulk/{bulk_id}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BulkSelector(_Model):
    """Who a bulk job is for. Criteria are ANDed; the values inside one criterion are ORed.

    An empty selector matches every active employee. Only people whose employment status is
    ``active`` are ever selected.
    """

    roles: list[str] | None = Field(default=None, description="Has any of these roles.")
    departments: list[str] | None = Field(default=None, description="In one of these.")
    locations: list[str] | None = Field(default=None, description="At one of these.")
    manager: ExternalId | None = Field(
        default=None, description="Reports (transitively) to this person's external id."
    )
    people: list[ExternalId] | None = Field(default=None, description="One of these ids.")


class BulkAssignRequest(_Model):
    """Assign one requirement to everyone the selector matches."""

    bulk_id: ExternalId
    requirement_id: ExternalId
    requirement_title: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Needed only when the active pack does not define the requirement.",
    )
    due_date: BoundedDate | None = Field(
        default=None, description="Defaults to today + the pack requirement's due_in_days."
    )
    selector: BulkSelector = Field(default_factory=BulkSelector)
    assigned_by: str


class BulkProgress(_Model):
    """How far a bulk job is: ``started + skipped + failed`` people of ``total`` are done."""

    bulk_id: str
    total: int = 0
    started: int = 0
    skipped: int = Field(default=0, description="Already had the obligation.")
    failed: int = 0
    done: bool = False
    errors: list[str] = Field(default_factory=list, description=f"The first {MAX_ERRORS}.")


class BulkPlan(_Model):
    """Result of ``resolve_bulk_targets``: what the job will do, fixed for its lifetime."""

    people: list[str]
    requirement_id: str
    requirement_title: str
    due_date: date
    pack_hash: str | None = Field(description="The active pack at resolve time, if any.")


class BulkWindow(_Model):
    """Input of ``start_bulk_assignments``: one window of the plan."""

    bulk_id: str
    requirement_id: str
    requirement_title: str
    due_date: date
    pack_hash: str | None
    assigned_by: str
    people: list[str]


class BulkWindowResult(_Model):
    """What one ``start_bulk_assignments`` call did."""

    started: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = Field(default_factory=list)


class BulkAssignInput(_Model):
    """The workflow's input: the request, plus the carried-over state after continue-as-new."""

    request: BulkAssignRequest
    plan: BulkPlan | None = None
    offset: int = 0
    progress: BulkProgress | None = None
    window: int = Field(default=WINDOW, ge=1, le=5000, description="People per activity call.")


@workflow.defn
class BulkAssignWorkflow:
    """Starts an ``AssignmentWorkflow`` per selected person, a window at a time."""

    @workflow.init
    def __init__(self, inp: BulkAssignInput) -> None:
        self._progress = inp.progress or BulkProgress(bulk_id=inp.request.bulk_id)

    @workflow.query
    def progress(self) -> BulkProgress:
        """Counts so far (``done`` once every window has run)."""
        return self._progress

    @workflow.run
    async def run(self, inp: BulkAssignInput) -> BulkProgress:
        """Resolve the targets (first run only), then start them window by window."""
        request = inp.request
        plan = inp.plan
        if plan is None:
            plan = await workflow.execute_activity(
                "resolve_bulk_targets",
                request,
                result_type=BulkPlan,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )
            self._progress.total = len(plan.people)
        offset = inp.offset
        while offset < len(plan.people):
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(
                    BulkAssignInput(
                        request=request,
                        plan=plan,
                        offset=offset,
                        progress=self._progress,
                        window=inp.window,
                    )
                )
            window = BulkWindow(
                bulk_id=request.bulk_id,
                requirement_id=plan.requirement_id,
                requirement_title=plan.requirement_title,
                due_date=plan.due_date,
                pack_hash=plan.pack_hash,
                assigned_by=request.assigned_by,
                people=plan.people[offset : offset + inp.window],
            )
            result = await workflow.execute_activity(
                "start_bulk_assignments",
                window,
                result_type=BulkWindowResult,
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )
            progress = self._progress
            progress.started += result.started
            progress.skipped += result.skipped
            progress.failed += result.failed
            room = MAX_ERRORS - len(progress.errors)
            if room > 0:
                progress.errors.extend(result.errors[:room])
            offset += len(window.people)
        self._progress.done = True
        return self._progress
