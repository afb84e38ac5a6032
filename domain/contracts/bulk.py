"""Bulk assignment contract (``workflows.bulk.BulkAssignWorkflow``, ``activities.bulk``)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from domain.bounds import BoundedDate
from domain.ids import ExternalId

#: People per ``start_bulk_assignments`` activity call (one progress update per window).
WINDOW = 500

#: First errors kept in :class:`BulkProgress` (the rest are only counted).
MAX_ERRORS = 20


class _Bulk(BaseModel):
    # Not frozen: the workflow adds each window's counts to its BulkProgress.
    model_config = ConfigDict(extra="forbid")


class BulkSelector(_Bulk):
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


class BulkAssignRequest(_Bulk):
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


class BulkProgress(_Bulk):
    """How far a bulk job is: ``started + skipped + failed`` people of ``total`` are done."""

    bulk_id: str
    total: int = 0
    started: int = 0
    skipped: int = Field(default=0, description="Already had the obligation.")
    failed: int = 0
    done: bool = False
    errors: list[str] = Field(default_factory=list, description=f"The first {MAX_ERRORS}.")


class BulkPlan(_Bulk):
    """Result of ``resolve_bulk_targets``: what the job will do, fixed for its lifetime."""

    people: list[str]
    requirement_id: str
    requirement_title: str
    due_date: date
    pack_hash: str | None = Field(description="The active pack at resolve time, if any.")


class BulkWindow(_Bulk):
    """Input of ``start_bulk_assignments``: one window of the plan."""

    bulk_id: str
    requirement_id: str
    requirement_title: str
    due_date: date
    pack_hash: str | None
    assigned_by: str
    people: list[str]


class BulkWindowResult(_Bulk):
    """What one ``start_bulk_assignments`` call did."""

    started: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = Field(default_factory=list)


class BulkAssignInput(_Bulk):
    """The workflow's input: the request, plus the carried-over state after continue-as-new."""

    request: BulkAssignRequest
    plan: BulkPlan | None = None
    offset: int = 0
    progress: BulkProgress | None = None
    window: int = Field(default=WINDOW, ge=1, le=5000, description="People per activity call.")
