"""One conversational turn's record: when the user stopped speaking, what each stage took, and
the OpenTelemetry span that roots the turn's trace.

The stage timings are typed fields; TTFA and the other derived figures are computed from them,
never timed separately, so the span attributes, metrics, logs and the client's optional timing
event all agree.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

from voxserve.tracing import current, start_turn_span, tracer


def _wall_ns(mono: float) -> int:
    """A monotonic timestamp as wall-clock nanoseconds (span start times are wall clock)."""
    return time.time_ns() - int((time.monotonic() - mono) * 1e9)


@dataclass
class Turn:
    speech_end: float  # monotonic: arrival of the last audio of the user's speech (or the request)
    span: Span | None = None
    decided: float = 0.0  # end of turn decided (speech_stopped / commit / response.create)
    asr_start: float = 0.0
    asr_done: float = 0.0
    audio_seconds: float = 0.0
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def begin(cls, speech_end: float, session_id: str, session_span: Span | None,
              **attributes: Any) -> Turn:
        attrs = {"voxserve.session_id": session_id, **attributes}
        span = start_turn_span(session_span, attrs, start_time_ns=_wall_ns(speech_end))
        return cls(speech_end=speech_end, span=span, attributes=attrs)

    @contextmanager
    def current(self) -> Iterator[None]:
        """Work started inside (e.g. a Serve call) joins the turn's trace."""
        with current(self.span):
            yield

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        if self.span is not None:
            self.span.set_attributes(attributes)

    def stage_span(self, name: str, start: float, end: float | None = None,
                   **attributes: Any) -> Span | None:
        """A child span of the turn from monotonic `start` (ended at `end` when given)."""
        if self.span is None:
            return None
        span = tracer().start_span(name, context=trace.set_span_in_context(self.span),
                                   start_time=_wall_ns(start), attributes=attributes)
        if end is not None:
            span.end(end_time=_wall_ns(end))
        return span
