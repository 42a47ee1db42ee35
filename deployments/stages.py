"""The model deployments: ASR (unary), LLM and TTS (streaming).

Engine calls are CPU-bound, so they run off the replica's event loop, which stays free to
receive `CancelledError` the moment the ingress cancels a call. A streaming method stops its
engine where the cancellation lands (`finally` / closing the engine's generator).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import numpy as np
from opentelemetry.trace import Span
from ray import serve

from voxserve import process_stats
from voxserve.config import MOONSHINE_MODEL, AsrOptions, LlmOptions, TtsOptions, fast_engine
from voxserve.deployments.logs import route_to_serve_log
from voxserve.languages import LanguageRequest, request
from voxserve.models.base import ChatRequest, LlmDelta, SpeechChunk, ToolSpec, Transcript
from voxserve.models.factory import build_asr, build_english_asr, build_llm, build_tts
from voxserve.tracing import mark_cancelled, tracer

log = logging.getLogger("voxserve.stages")


class _Stage:
    """Shared bits: load timing, readiness and counters of finished and cancelled work."""

    kind = ""

    def _loaded(self, model: str, started: float) -> None:
        route_to_serve_log()
        self._info: dict[str, Any] = {"kind": self.kind, "model": model,
                                      "load_seconds": round(time.monotonic() - started, 2)}
        self._cancelled = 0
        self._completed = 0
        self._running = 0  # work in the counted blocks right now (what a cancel would land on)
        # wall-clock times cancellations landed here, for the interruption benchmark to match
        # against the ingress's decisions (same host clock); bounded
        self._cancel_times: deque[float] = deque(maxlen=256)

    @contextlib.contextmanager
    def _counting_cancel(self, span: Span | None = None) -> Iterator[None]:
        """Counts a cancellation that lands in the block and marks `span`; it still propagates."""
        self._running += 1
        try:
            yield
        except asyncio.CancelledError:
            self._cancelled += 1
            self._cancel_times.append(time.time())
            if span is not None:
                mark_cancelled(span, "caller_cancelled")
            raise
        finally:
            self._running -= 1

    async def info(self) -> dict[str, Any]:
        return {**self._info, "cancelled": self._cancelled, "completed": self._completed,
                "running": self._running, "recent_cancels": list(self._cancel_times),
                "process": process_stats.read()}  # this replica's own process, for leak checks

    async def ready(self) -> bool:
        return True


@serve.deployment(name="ASR")
class AsrDeployment(_Stage):
    kind = "asr"

    def __init__(self, options: dict[str, Any]) -> None:
        started = time.monotonic()
        self._opts = opts = AsrOptions.model_validate(options)
        self._engine = build_asr(opts)
        self._english = build_english_asr(opts)  # English turns, when a fast engine serves them
        # one decode per worker at a time; more requests queue here rather than oversubscribe
        self._slots = asyncio.Semaphore(opts.num_workers)
        # Moonshine decodes in ~70 ms: it gets its own slot, so an English turn never waits
        # behind a ~1 s Whisper decode of another session
        self._english_slots = asyncio.Semaphore(1)
        self._language = request(opts.language)  # the operator's, when a session names none
        self._partials_shed = 0  # partial decodes refused because the fast engine was busy
        self._loaded(opts.model if self._english is None else f"{opts.model}+{MOONSHINE_MODEL}",
                     started)

    async def transcribe(self, audio_16k: np.ndarray, language: LanguageRequest = None,
                         prompt: str | None = None, phrases: tuple[str, ...] = (),
                         word_probabilities: bool = False, noisy: bool = False) -> Transcript:
        english = self._english is not None and fast_engine(
            self._opts, language, prompt, phrases, word_probabilities, noisy)
        engine, slots = ((self._english, self._english_slots) if english and self._english
                         else (self._engine, self._slots))
        with tracer().start_as_current_span("asr.transcribe", attributes={
                "voxserve.model": MOONSHINE_MODEL if english else self._opts.model,
                "voxserve.audio_seconds": round(audio_16k.size / 16000, 3)}) as span:
            # on a cancel the decode thread finishes on its own (neither engine can be
            # interrupted) and its result is dropped
            async with slots:
                with self._counting_cancel(span):
                    result: Transcript = await asyncio.to_thread(
                        engine.transcribe, audio_16k,
                        self._language if language is None else language, prompt,
                        phrases=phrases, word_timestamps=True if word_probabilities else None)
            span.set_attributes({"voxserve.decode_ms": round(result.decode_seconds * 1000, 1),
                                 "voxserve.language": result.language or ""})
        self._completed += 1
        log.info("transcribed %.1f s of audio in %.0f ms", result.audio_seconds,
                 result.decode_seconds * 1000)
        return result

    async def transcribe_partial(self, audio_16k: np.ndarray, language: LanguageRequest = None,
                                 noisy: bool = False) -> Transcript | None:
        """A partial re-decode, only when the fast engine is idle (None otherwise). Measured
        at 8 concurrent talkers: queued partials (one per session every 250 ms, ~100 ms each)
        kept Moonshine's one slot full, and each turn's own decode waited behind them (ASR p50
        1058 ms). Shed instead, a turn's decode waits behind one partial at most."""
        if not fast_engine(self._opts, language, noisy=noisy):
            return None  # partials are a fast engine's: Whisper is too slow to re-decode
        if (self._english_slots if self._english is not None else self._slots).locked():
            self._partials_shed += 1
            return None
        return await self.transcribe(audio_16k, language, noisy=noisy)

    async def info(self) -> dict[str, Any]:
        return {**await super().info(), "partials_shed": self._partials_shed}


@serve.deployment(name="LLM")
class LlmDeployment(_Stage):
    kind = "llm"

    def __init__(self, options: dict[str, Any]) -> None:
        started = time.monotonic()
        opts = LlmOptions.model_validate(options)
        self._engine = build_llm(opts)
        self._loaded(opts.model, started)

    async def stream(self, request: ChatRequest) -> AsyncIterator[LlmDelta]:
        span = tracer().start_span("llm.generate", attributes={
            "voxserve.model": self._info["model"], "voxserve.response_id": request.request_id,
            "voxserve.tools": len(request.tools)})
        gen = self._engine.stream(request)
        first = True
        try:
            with self._counting_cancel(span):
                async for delta in gen:
                    if first:
                        span.add_event("first_token")  # prefill ends here
                        first = False
                    if delta.kind == "done":
                        span.set_attributes({"voxserve.prompt_tokens": delta.prompt_tokens,
                                             "voxserve.cached_tokens": delta.cached_tokens,
                                             "voxserve.completion_tokens": delta.completion_tokens,
                                             "voxserve.finish_reason": delta.finish_reason})
                    yield delta
            self._completed += 1
        except asyncio.CancelledError:
            log.info("llm.cancelled response=%s", request.request_id)
            raise
        finally:
            with contextlib.suppress(Exception):
                await gen.aclose()  # stops decoding in the engine
            span.end()

    async def warm(self, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec] = (),
                   tool_choice: str = "auto") -> None:
        await self._engine.warm(messages, tools, tool_choice)


@serve.deployment(name="TTS")
class TtsDeployment(_Stage):
    kind = "tts"

    def __init__(self, options: dict[str, Any]) -> None:
        started = time.monotonic()
        opts = TtsOptions.model_validate(options)
        self._engine = build_tts(opts)
        self._default_speaker = opts.default_speaker
        self._loaded("hibari", started)

    async def speak(self, text: str, voice: str | None = None,
                    speed: float = 1.0) -> AsyncIterator[SpeechChunk]:
        span = tracer().start_span("tts.synthesize", attributes={
            "voxserve.model": "hibari", "voxserve.chars": len(text)})
        try:
            with self._counting_cancel(span):
                chunk: SpeechChunk = await asyncio.to_thread(
                    self._engine.synthesize, text, voice or self._default_speaker, speed)
            span.set_attribute("voxserve.audio_seconds",
                               round(chunk.audio.size / chunk.sample_rate, 3))
        finally:
            span.end()  # the span covers synthesis; delivery below runs at the caller's pace
        with self._counting_cancel():
            yield chunk
        self._completed += 1
