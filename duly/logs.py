"""Process logging: plain text by default, one JSON object per line with ``DULY_LOG_FORMAT=json``.

A JSON line carries ``time``, ``level``, ``logger``, ``message`` and, when the record was logged
inside a Temporal activity or workflow, ``workflow_id``, ``run_id``, ``workflow_type`` and
``activity`` (the activity's name) and ``attempt``, so a log line joins up with the workflow's
history in the Temporal UI. Nothing else from the record is copied: ``extra`` fields and the
SDK's own context dicts (which hold the activity's *arguments*) are left out, so no personal
data reaches the log through them. Messages themselves never name people (Duly's convention,
see README "Security"); workflow ids are business keys made of the person's *external id*
(an HR number), never a name, address or phone number.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from temporalio import activity, workflow

from duly.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def temporal_context() -> dict[str, Any]:
    """The ids of the activity or workflow this thread or task runs (empty outside one)."""
    try:
        if activity.in_activity():
            info = activity.info()
            return {
                "workflow_id": info.workflow_id,
                "run_id": info.workflow_run_id,
                "workflow_type": info.workflow_type,
                "activity": info.activity_type,
                "activity_id": info.activity_id,
                "attempt": info.attempt,
            }
        if workflow.in_workflow():
            winfo = workflow.info()
            return {
                "workflow_id": winfo.workflow_id,
                "run_id": winfo.run_id,
                "workflow_type": winfo.workflow_type,
            }
    except Exception:  # noqa: BLE001 - logging must never fail the caller
        return {}
    return {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: fixed keys only (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(temporal_context())
        if record.exc_info:
            # The exception's type and traceback (code locations); its message is kept as
            # Python renders it, like the text format does.
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a record is emitted, not when it was made.

    A plain ``StreamHandler()`` keeps the stream it was created with: when ``duly api`` or
    ``duly worker`` runs inside another program that swaps ``sys.stderr`` for a while (a test's
    ``CliRunner``), the root handler outlives that stream, and every later line (the outbox
    notifier's, from an activity thread) fails with "I/O operation on closed file". This is
    how ``logging.lastResort`` behaves too.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


def setup_logging(settings: Settings) -> None:
    """Configure the root logger to stderr in the format ``settings.log_format`` asks for."""
    handler = StderrHandler()
    handler.setFormatter(
        JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
