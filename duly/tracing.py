"""Optional OpenTelemetry tracing (``DULY_OTEL_ENABLED``; needs the ``otel`` extra).

Off by default: nothing here imports OpenTelemetry unless tracing is on. When on,

* the Temporal client (and so every worker built on it) carries
  ``temporalio.contrib.opentelemetry.TracingInterceptor``: starting, signalling and querying a
  workflow, each workflow run and each activity attempt become spans, linked across processes
  through Temporal headers;
* the API is instrumented with ``FastAPIInstrumentor`` (one span per request, named by route
  template) and its engine with ``SQLAlchemyInstrumentor`` (one span per statement; statement
  parameters are not recorded).

Exporting is configured by the standard ``OTEL_*`` variables: :func:`configure_tracer_provider`
installs an OTLP/HTTP exporter (``OTEL_EXPORTER_OTLP_ENDPOINT``) unless a tracer provider is
already set (tests set one with an in-memory exporter).
"""

from __future__ import annotations

import logging
from typing import Any

from duly.settings import Settings

log = logging.getLogger("duly.tracing")

_configured = False


def configure_tracer_provider(service_name: str) -> None:
    """Install an SDK tracer provider exporting over OTLP/HTTP, once per process.

    Left alone when the application (or a test) already installed an SDK provider.
    """
    global _configured
    if _configured:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    _configured = True
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("OpenTelemetry tracing on (service %s)", service_name)


def temporal_interceptors(settings: Settings) -> list[Any]:
    """The client interceptors tracing needs (none when ``DULY_OTEL_ENABLED`` is off)."""
    if not settings.otel_enabled:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


def instrument_api(app: Any, engine: Any, settings: Settings) -> None:
    """Trace the FastAPI ``app`` and the SQLAlchemy ``engine`` (no-op when tracing is off)."""
    if not settings.otel_enabled:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    # The instrumentation declares sqlalchemy < 2.1 but works on 2.1 (tests/test_observability.py
    # checks statement spans); without skip_dep_check it silently instruments nothing.
    SQLAlchemyInstrumentor().instrument(engine=engine, skip_dep_check=True)
