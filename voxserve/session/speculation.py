"""An answer started at a pause, before the turn is decided.

When the first pause's words read as a finished sentence, the session sends the conversation with
those words to the LLM at once: its prefill and first tokens then overlap the rest of the
end-of-turn wait (250-1500 ms) instead of following it. Nothing of it reaches the client: the
deltas are only kept. If the turn ends at that pause, the response adopts the stream, but only
when the request it would have made is the very same one (same words, context and settings);
anything else, and speech that resumes, discards it: the Serve call behind it is cancelled and
the outcome is reported with the seconds the LLM spent on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any, Literal

from voxserve.models.base import ChatRequest, LlmDelta
from voxserve.session.pipeline import Pipeline
from voxserve.tracing import current, tracer

# adopted: the response streams it; resumed: the user went on talking; mismatched: the response
# asked for something else (other words, context or settings); unused: no response followed
Outcome = Literal["adopted", "resumed", "mismatched", "unused"]


class Speculation:
    def __init__(self, pipeline: Pipeline, request: ChatRequest,
                 spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
                 report: Callable[[Outcome, float], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.request = request
        self._pipeline = pipeline
        self._report = report
        self._clock = clock
        self._started = clock()
        self._ended: float | None = None  # when the LLM's stream finished
        self._deltas: list[LlmDelta] = []
        self._grew = asyncio.Event()
        self._error: Exception | None = None
        self._outcome: Outcome | None = None
        # In the turn's trace, the LLM call hangs under this span (not the response's, which
        # does not exist yet); it ends once the outcome is known and the stream is over.
        self._span = tracer().start_span("voxserve.speculation", attributes={
            "voxserve.request_id": request.request_id})
        with current(self._span):
            self._task = spawn(self._pull())

    async def _pull(self) -> None:
        try:
            async with contextlib.aclosing(self._pipeline.chat(self.request)) as stream:
                async for delta in stream:
                    self._deltas.append(delta)
                    self._grew.set()
        except Exception as exc:  # handed to the adopting response, which reports it
            self._error = exc
        finally:
            self._ended = self._clock()
            self._grew.set()
            self._end_span()

    def _end_span(self) -> None:
        if self._outcome is not None and self._ended is not None and self._span.is_recording():
            self._span.end()

    @property
    def finished(self) -> bool:
        return self._ended is not None

    def matches(self, request: ChatRequest) -> bool:
        """Whether `request` asks for exactly what this speculation is answering."""
        return dataclasses.replace(request, request_id=self.request.request_id) == self.request

    def discard(self, outcome: Outcome) -> None:
        """Not used: stop the LLM's work and report what it cost. Once only."""
        if self._outcome is not None:
            return
        self._outcome = outcome
        self._span.set_attribute("voxserve.speculation.outcome", outcome)
        self._task.cancel()
        self._report(outcome, (self._ended or self._clock()) - self._started)
        self._end_span()

    def adopt(self) -> AsyncGenerator[LlmDelta, None]:
        """The answer for the response: what was kept, then the rest as it comes."""
        assert self._outcome is None, "adopted after it was discarded"
        self._outcome = "adopted"
        self._span.set_attribute("voxserve.speculation.outcome", "adopted")
        self._report("adopted", self._clock() - self._started)
        self._end_span()
        return self._replay()

    async def _replay(self) -> AsyncGenerator[LlmDelta, None]:
        sent = 0
        try:
            while True:
                while sent < len(self._deltas):
                    sent += 1
                    yield self._deltas[sent - 1]
                if self._ended is not None:
                    if self._error is not None:
                        raise self._error
                    return
                self._grew.clear()
                await self._grew.wait()
        finally:
            self._task.cancel()  # the response closed the stream early (cancelled, failed)
