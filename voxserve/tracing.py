"""OpenTelemetry for VoxServe: one trace per conversational turn, across every deployment.

Ray Serve sets up the tracer provider in each replica and proxy from `tracing_config` and
propagates the caller's current context into every handle call, so a span made current in the
ingress parents the Serve spans and our own spans in the ASR, LLM and TTS replicas.

A turn's root span starts with an empty context (a new trace) and links to the session's span,
so a long session does not become one giant trace. Exporters are the OpenTelemetry SDK's and
read the standard environment (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_BSP_SCHEDULE_DELAY`, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, Status, StatusCode

TRACER_NAME = "voxserve"


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def otlp_exporter() -> list[Any]:
    """Serve's `exporter_import_path` target: span processors for this process.

    Called by Serve in every replica and proxy. OTLP over HTTP; the endpoint and batching come
    from the standard OTEL_* environment variables.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return [BatchSpanProcessor(OTLPSpanExporter())]


def sampling_from_env(default: float) -> float:
    """OTEL_TRACES_SAMPLER / _ARG mapped onto Serve's ratio sampler."""
    sampler = os.environ.get("OTEL_TRACES_SAMPLER", "").lower()
    if sampler in ("always_off", "parentbased_always_off"):
        return 0.0
    if sampler in ("always_on", "parentbased_always_on"):
        return 1.0
    if sampler in ("traceidratio", "parentbased_traceidratio"):
        try:
            return min(1.0, max(0.0, float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", default))))
        except ValueError:
            return default
    return default


def otlp_endpoint_configured() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def start_turn_span(session_span: Span | None, attributes: dict[str, Any],
                    start_time_ns: int | None = None) -> Span:
    """The root span of a new trace for one turn, linked to (not parented by) the session."""
    links = []
    if session_span is not None and session_span.get_span_context().is_valid:
        links.append(Link(session_span.get_span_context()))
    return tracer().start_span("voxserve.turn", context=otel_context.Context(), links=links,
                               attributes=attributes, start_time=start_time_ns)


@contextmanager
def current(span: Span | None) -> Iterator[None]:
    """Make `span` current (so tasks created and Serve calls made inside it are its children)."""
    if span is None:
        yield
        return
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)


def mark_cancelled(span: Span, reason: str) -> None:
    span.set_attribute("voxserve.cancelled", True)
    span.set_attribute("voxserve.cancel_reason", reason)
    span.set_status(Status(StatusCode.UNSET, f"cancelled: {reason}"))


def mark_failed(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
