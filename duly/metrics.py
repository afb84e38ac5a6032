"""Duly's Prometheus metrics: one definition each, shared by the API and the worker.

Every process keeps its own counters (the ``prometheus_client`` default registry): scrape each
API process and each worker on its own port and let Prometheus sum them (``sum by (...)``).
When ``PROMETHEUS_MULTIPROC_DIR`` is set (one directory shared by several processes of one
host, e.g. uvicorn ``--workers``), :func:`exposition` aggregates the files of every process
instead, as ``prometheus_client``'s multiprocess mode documents.

Labels are bounded sets (route templates, channels, statuses, kinds): never ids, addresses or
names, so a metric can carry no personal data and its cardinality stays small.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: Latency buckets (seconds) for HTTP requests: most answers take a few ms, a Temporal round trip
#: tens of ms, the slow tail seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUEST_SECONDS = Histogram(
    "duly_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status code.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
REMINDERS = Counter(
    "duly_reminders_total",
    "Reminder and notice sends by channel and outcome (sent, delivered, failed, held, skipped, "
    "unreachable, duplicate, retry, ...).",
    ["channel", "outcome"],
)
DECISIONS = Counter(
    "duly_decisions_total",
    "Status decisions by the decided status and who decided (workflow: decide_status; sweep: "
    "a transition the nightly sweep wrote).",
    ["status", "source"],
)
SWEEP_SECONDS = Histogram(
    "duly_sweep_duration_seconds",
    "Wall time of one status sweep activity (read, decide and write every open obligation).",
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
WEBHOOK_VERIFICATION_FAILURES = Counter(
    "duly_webhook_verification_failures_total",
    "Provider webhook requests refused because their signature did not verify (or was stale).",
    ["provider"],
)


def record_reminder(channel: str, outcome: str, *, duplicate: bool = False) -> None:
    """Count one send outcome (a ledger replay of a settled row counts as ``duplicate``)."""
    REMINDERS.labels(channel=channel, outcome="duplicate" if duplicate else outcome).inc()


class OpenObligations(Collector):
    """``duly_open_obligations{kind,status}``, counted from the read model at scrape time.

    One ``GROUP BY`` over the obligations table (indexed on status), cached for ``ttl`` seconds
    so several scrapers (or a dashboard refreshing fast) cost one query per ``ttl``. A failing
    query yields no sample (and ``duly_open_obligations_scrape_error 1``) rather than failing
    the whole scrape.
    """

    def __init__(self, count: Callable[[], Iterable[tuple[str, str, int]]], ttl: float = 15.0):
        self._count = count
        self._ttl = ttl
        self._lock = threading.Lock()
        self._at = -1e18
        self._rows: list[tuple[str, str, int]] = []
        self._error = False

    def collect(self) -> Iterator[Metric]:
        """Yield the gauge (refreshing the cached counts when older than ``ttl``)."""
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self._ttl:
                try:
                    self._rows = list(self._count())
                    self._error = False
                except Exception:  # noqa: BLE001 - the database being down must not fail /metrics
                    self._rows, self._error = [], True
                self._at = now
            rows, error = self._rows, self._error
        gauge = GaugeMetricFamily(
            "duly_open_obligations",
            "Open obligations (not completed, not cancelled) by kind and status, from the read "
            "model.",
            labels=["kind", "status"],
        )
        for kind, status, n in rows:
            gauge.add_metric([kind, status], n)
        yield gauge
        yield GaugeMetricFamily(
            "duly_open_obligations_scrape_error",
            "1 when the last count of open obligations failed (database unreachable).",
            value=1 if error else 0,
        )


def exposition(extra: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """This process's metrics (every process's in multiprocess mode) plus ``extra``.

    Returns:
        The text exposition and its content type.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry: Any = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Default())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _Default(Collector):
    """The process-wide default registry, re-exposed next to per-app collectors."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
