"""Worker bootstrap: which workflows and activities a Duly worker runs."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import start_http_server
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.apprenticeship import ApprenticeshipActivities
from activities.assignment import AssignmentActivities
from activities.bulk import BulkActivities
from activities.certification import CertificationActivities
from activities.directory import DirectoryActivities
from activities.integrations import IntegrationActivities
from activities.mentorship import MentorshipActivities
from activities.rules import RulesActivities
from activities.tracks import TrackActivities
from domain.contracts.integration import SyncRequest, SyncResult
from duly.settings import Settings
from duly.temporal import connect, metrics_runtime
from services.apprenticeships import award_registrar
from services.assignments import start_assignment
from services.integrations import ensure_all_schedules, run_sync
from store.db import Database
from workflows.apprenticeship import ApprenticeshipWorkflow
from workflows.assignment import AssignmentWorkflow
from workflows.bulk import BulkAssignWorkflow
from workflows.certification import CertificationWorkflow
from workflows.digest import DigestStarter, DigestWorkflow
from workflows.directory import (
    RECONCILE_SCHEDULE_ID,
    DirectoryChangeWorkflow,
    DirectoryReconcileWorkflow,
    ensure_reconcile_schedule,
)
from workflows.integration import IntegrationSyncWorkflow
from workflows.mentorship import MentorshipWorkflow
from workflows.project import ProjectReadinessWorkflow
from workflows.rollout import PackRolloutWorkflow
from workflows.sweep import SWEEP_SCHEDULE_ID, StatusSweepWorkflow, ensure_sweep_schedule
from workflows.track_notice import TrackCompletedWorkflow

log = logging.getLogger("duly.worker")

WORKFLOWS: list[type] = [
    CertificationWorkflow,
    AssignmentWorkflow,
    PackRolloutWorkflow,
    StatusSweepWorkflow,
    DigestWorkflow,
    BulkAssignWorkflow,
    MentorshipWorkflow,
    ProjectReadinessWorkflow,
    TrackCompletedWorkflow,
    ApprenticeshipWorkflow,
    DirectoryChangeWorkflow,
    DirectoryReconcileWorkflow,
    IntegrationSyncWorkflow,
]


#: Modules imported by workflow code once per process instead of once per workflow run. They
#: hold no state at module level that a run changes (constants, classes and functions only).
PASSED_THROUGH = ("workflows",)


def workflow_runner(settings: Settings) -> WorkflowRunner:
    """The sandbox Duly's workflows run in.

    The SDK's default re-imports the workflow's module and everything it imports that is not
    passed through into a fresh ``sys.modules`` for every run, so each cached workflow holds
    its own copy of ``workflows.*`` (classes, functions, code objects). Duly passes them
    through: one copy per process. The sandbox's runtime restrictions (no ``datetime.now``,
    ``random``, I/O...) still apply to modules it re-imports; ``DULY_WORKER_SANDBOX_REIMPORT``
    brings back the per-run copy.
    """
    if settings.worker_sandbox_reimport:
        return SandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
    )


def build_worker(
    client: Client,
    *,
    task_queue: str,
    db: Database,
    max_threads: int = 16,
    settings: Settings | None = None,
    **worker_options: Any,
) -> Worker:
    """A worker for all of Duly's workflows and activities on ``task_queue``.

    Activities are synchronous (SQLAlchemy), so they run on a bounded thread pool.
    """
    from notifications.providers import build_channels

    settings = settings or Settings()
    # Twilio reports delivery to our webhook only when the world can reach us.
    callback = (
        f"{settings.public_url.rstrip('/')}/webhooks/twilio/status" if settings.public_url else None
    )
    try:
        # The digest starter calls the (async) client from activity threads on this loop.
        digest: DigestStarter | None = DigestStarter(
            client, task_queue, asyncio.get_running_loop(), settings.digest_window_seconds
        )
    except RuntimeError:
        digest = None  # built outside an event loop: reminders are sent one by one
    activities = AssignmentActivities(
        db, settings, build_channels(settings, twilio_status_callback=callback), digest
    )
    rules = RulesActivities(db, client, start_assignment=start_assignment)
    bulk = BulkActivities(db, client, start_assignment=start_assignment)

    async def _client() -> Client:
        return client

    async def _sync(request: SyncRequest) -> SyncResult:
        return await run_sync(db, _client, settings, request)

    worker_options.setdefault("workflow_runner", workflow_runner(settings))
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            *activities.all(),
            *rules.all(),
            *bulk.all(),
            *DirectoryActivities(db, client, start_assignment=start_assignment).all(),
            *CertificationActivities(db).all(),
            *MentorshipActivities(db, client, start_assignment=start_assignment).all(),
            *TrackActivities(db, client, base_url=settings.api_base_url).all(),
            # Notices through the reminders' deliverer (same channels, ledger and lease).
            *ApprenticeshipActivities(db, activities.deliverer, award_registrar(db, client)).all(),
            *IntegrationActivities(_sync).all(),
        ],
        activity_executor=ThreadPoolExecutor(max_workers=max_threads),
        max_concurrent_activities=max_threads,
        **worker_options,
    )


async def connect_with_retry(
    settings: Settings, *, attempts: int = 60, runtime: Runtime | None = None
) -> Client:
    """Connect to Temporal, waiting for it to come up (the dev server takes a few seconds)."""
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            return await connect(settings, runtime=runtime)
        except Exception as exc:  # noqa: BLE001 - connection errors vary by transport
            last = exc
            if attempt == 0:
                log.info("waiting for Temporal at %s", settings.temporal_address)
            await asyncio.sleep(1)
    raise RuntimeError(
        f"Temporal is unreachable at {settings.temporal_address} after {attempts}s "
        f"({type(last).__name__}); check DULY_TEMPORAL_ADDRESS"
    )


def serve_metrics(settings: Settings) -> Runtime | None:
    """Start this worker's metrics endpoints; the Temporal runtime exporting SDK metrics.

    ``DULY_WORKER_METRICS_PORT``: Duly's own series (reminders, decisions, sweep duration) at
    ``:PORT/metrics``. ``DULY_TEMPORAL_METRICS_ADDRESS``: the SDK's (task latencies, slots,
    sticky cache, polls), served by the runtime returned. Either may be off (unset).
    """
    if settings.otel_enabled:
        from duly.tracing import configure_tracer_provider

        configure_tracer_provider("duly-worker")
    if settings.worker_metrics_port is not None:
        start_http_server(settings.worker_metrics_port)
        log.info("Duly metrics on :%d/metrics", settings.worker_metrics_port)
    if settings.temporal_metrics_address is None:
        return None
    log.info("Temporal SDK metrics on %s/metrics", settings.temporal_metrics_address)
    return metrics_runtime(settings.temporal_metrics_address)


async def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM, then finish in-flight tasks and exit."""
    runtime = serve_metrics(settings)
    client = await connect_with_retry(settings, runtime=runtime)
    db = Database.from_settings(settings)
    tuning: dict[str, Any] = {}
    if settings.worker_max_concurrent_workflow_tasks is not None:
        tuning["max_concurrent_workflow_tasks"] = settings.worker_max_concurrent_workflow_tasks
    if settings.worker_max_cached_workflows is not None:
        tuning["max_cached_workflows"] = settings.worker_max_cached_workflows
    worker = build_worker(
        client,
        task_queue=settings.temporal_task_queue,
        db=db,
        max_threads=settings.worker_max_concurrent_activities,
        settings=settings,
        **tuning,
    )
    if await ensure_sweep_schedule(client, settings.temporal_task_queue):
        log.info("created the daily status sweep schedule %r", SWEEP_SCHEDULE_ID)
    if await ensure_reconcile_schedule(client, settings.temporal_task_queue):
        log.info("created the nightly directory reconciliation schedule %r", RECONCILE_SCHEDULE_ID)
    try:
        # An integration created while Temporal was unreachable gets its schedule here.
        count = await ensure_all_schedules(client, db, settings)
        log.info("integration schedules ensured: %d", count)
    except Exception as exc:  # noqa: BLE001 - the worker still runs; the API retries on edit
        log.warning("could not ensure integration schedules: %s", type(exc).__name__)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker polling task queue %r on %s (namespace %s)",
        settings.temporal_task_queue,
        settings.temporal_address,
        settings.temporal_namespace,
    )
    async with worker:
        await stop.wait()
        log.info("worker shutting down")
    db.dispose()
