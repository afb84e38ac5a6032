"""Worker observability: Temporal SDK metrics on their own port, JSON logs, OpenTelemetry traces."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from duly.logs import JsonFormatter, setup_logging
from duly.settings import Settings
from duly.tracing import temporal_interceptors
from duly.worker import serve_metrics
from store.db import Database
from tests.conftest import bearer
from tests.fakes.temporal import FakeTemporal
from tests.timeskip import wheel_binary

EMAIL = "ada.lovelace@example.com"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


@activity.defn(name="observed_note")
def observed_note(person_email: str) -> str:
    # An activity whose *argument* is personal data: the JSON line must not carry it.
    logging.getLogger("duly.activities.test").info("noting one reminder")
    return "noted"


@workflow.defn(name="ObservedWorkflow", sandboxed=False)
class ObservedWorkflow:
    @workflow.run
    async def run(self, person_email: str) -> str:
        workflow.logger.info("observing")
        result: str = await workflow.execute_activity(
            observed_note, person_email, start_to_close_timeout=timedelta(seconds=30)
        )
        return result


class Lines(logging.Handler):
    """Collects formatted records."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def json_lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


async def run_observed(client: Client, task_queue: str) -> str:
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[ObservedWorkflow],
        activities=[observed_note],
        activity_executor=__import__("concurrent.futures").futures.ThreadPoolExecutor(2),
    ):
        return str(
            await client.execute_workflow(
                ObservedWorkflow.run, EMAIL, id=f"observed/{uuid.uuid4()}", task_queue=task_queue
            )
        )


@pytest.mark.asyncio
async def test_worker_serves_duly_and_temporal_sdk_metrics_on_their_own_ports(
    json_lines: Lines,
) -> None:
    duly_port, sdk_port = free_port(), free_port()
    settings = Settings(
        env="test",
        worker_metrics_port=duly_port,
        temporal_metrics_address=f"127.0.0.1:{sdk_port}",
    )
    runtime = serve_metrics(settings)
    assert runtime is not None
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=wheel_binary("temporal-test-server"),
        runtime=runtime,
    )
    try:
        assert await run_observed(env.client, "observed") == "noted"
        sdk = scrape(sdk_port)
    finally:
        await env.shutdown()
    # The SDK's own series, from this worker's runtime.
    assert "temporal_workflow_completed" in sdk
    assert "temporal_activity_execution_latency" in sdk
    assert 'task_queue="observed"' in sdk
    # Duly's series on the other port (families are declared before anything is observed).
    assert "# HELP duly_reminders_total" in scrape(duly_port)

    # JSON lines: the activity's and the workflow's ids, never the activity's argument.
    records = [json.loads(line) for line in json_lines.lines]
    noted = next(r for r in records if r["message"] == "noting one reminder")
    assert noted["activity"] == "observed_note"
    assert noted["workflow_id"].startswith("observed/") and noted["run_id"]
    assert noted["workflow_type"] == "ObservedWorkflow"
    observed = next(r for r in records if r["message"].startswith("observing"))
    assert observed["workflow_id"] == noted["workflow_id"] and observed["run_id"]
    assert "activity" not in observed
    assert not [line for line in json_lines.lines if EMAIL in line]


def test_metrics_ports_are_off_unless_set() -> None:
    assert serve_metrics(Settings(env="test")) is None


def test_json_lines_carry_no_extra_fields() -> None:
    record = logging.LogRecord("duly.x", logging.WARNING, __file__, 1, "held %s", ("x",), None)
    record.email = EMAIL  # what a careless `extra=` would add
    entry = json.loads(JsonFormatter().format(record))
    assert set(entry) == {"time", "level", "logger", "message"}
    assert entry["message"] == "held x" and entry["level"] == "WARNING"


@pytest.mark.asyncio
async def test_opentelemetry_traces_api_database_and_workflows(sqlite_db: Database) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from api.app import create_app

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    assert temporal_interceptors(Settings(env="test")) == []  # off by default

    settings = Settings(env="test", otel_enabled=True, rate_limit_per_token="off")
    app = create_app(settings, database=sqlite_db, temporal_client=FakeTemporal())  # type: ignore[arg-type]
    with TestClient(app) as client:
        assert client.get("/obligations", headers=bearer(sqlite_db, "hr_admin")).status_code == 200
    names = [span.name for span in exporter.get_finished_spans()]
    assert "GET /obligations" in names
    assert any(
        span.attributes and span.attributes.get("db.system")
        for span in exporter.get_finished_spans()
    )

    exporter.clear()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=wheel_binary("temporal-test-server"),
    )
    try:
        traced = Client(
            env.client.service_client,
            namespace=env.client.namespace,
            data_converter=pydantic_data_converter,
            interceptors=temporal_interceptors(settings),
        )
        assert await run_observed(traced, "traced") == "noted"
    finally:
        await env.shutdown()
    names = [span.name for span in exporter.get_finished_spans()]
    assert "StartWorkflow:ObservedWorkflow" in names
    assert "RunWorkflow:ObservedWorkflow" in names
    assert "RunActivity:observed_note" in names


def test_the_log_handler_writes_to_stderr_as_it_is_when_a_line_is_logged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # ``duly api`` run by a CliRunner (tests/api/test_limits.py) set the root handler up while
    # stderr was the runner's buffer; the outbox notifier's next line, from an activity thread
    # of a later test, failed with "I/O operation on closed file".
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with contextlib.redirect_stderr(io.StringIO()) as swapped:
            setup_logging(Settings(env="test"))
        swapped.close()
        logging.getLogger("duly.outbox").info("OUTBOX email to person p-1: notification 1")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "OUTBOX email to person p-1: notification 1" in err
    assert "Logging error" not in err
