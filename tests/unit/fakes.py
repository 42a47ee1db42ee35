"""Fakes for unit tests of the session layer: an energy VAD, a scripted pipeline, a transport."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import numpy as np

from voxserve.languages import LanguageRequest
from voxserve.models.base import ChatRequest, LlmDelta, Phone, SpeechChunk, Transcript, Word
from voxserve.config import AsrOptions, LimitsOptions, SessionOptions, VadOptions
from voxserve.session.session import RealtimeSession


class EnergyVad:
    """Speech probability 1.0 when a window's RMS is above 0.02 (tones in tests), else 0."""

    window_samples = 512

    def reset(self) -> None:
        pass

    def probability(self, window_16k: np.ndarray) -> float:
        return 1.0 if float(np.sqrt(np.mean(window_16k ** 2))) > 0.02 else 0.0


class Clock:
    """A clock the test moves by hand (`clock.now += 1.0`)."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakePipeline:
    def __init__(self, tokens: Sequence[str] = ("Hello ", "there, ", "nice ", "to ", "meet ", "you."),
                 token_delay: float = 0.0, transcript: str = "hi there",
                 tool_call: tuple[str, str] | None = None) -> None:
        self.tokens = list(tokens)
        self.token_delay = token_delay
        self.transcript = transcript
        self.tool_call = tool_call
        self.scripted_calls: list[tuple[str, str]] = []  # one call per request, then text
        self.requests: list[ChatRequest] = []
        self.spoken: list[str] = []
        self.chat_cancelled = 0
        self.speak_cancelled = 0
        self.warmed = 0
        self.warmed_with: list[list[dict[str, Any]]] = []  # the messages of each warm()
        self.fail_chat = False
        self.transcribed: list[float] = []  # seconds of audio per ASR call
        self.asr_requests: list[tuple[LanguageRequest, str | None, tuple[str, ...]]] = []
        self.asr_noisy: list[bool] = []  # per ASR call: did the session suppress noise
        self.asr_cancelled = 0
        self.asr_busy = False  # set: partial decodes are refused, as a busy ASR replica does
        self.partial_requests = 0
        self.asr_delay = 0.0
        # set: a decode hears only the words already spoken at this rate (a growing transcript)
        self.words_per_second: float | None = None

    async def transcribe(self, audio_16k: np.ndarray, language: LanguageRequest = None,
                         prompt: str | None = None, phrases: tuple[str, ...] = (),
                         word_probabilities: bool = False, noisy: bool = False) -> Transcript:
        self.transcribed.append(audio_16k.size / 16000)
        self.asr_requests.append((language, prompt, phrases))
        self.asr_noisy.append(noisy)
        try:
            if self.asr_delay:
                await asyncio.sleep(self.asr_delay)
        except asyncio.CancelledError:
            self.asr_cancelled += 1
            raise
        text = self.transcript
        if self.words_per_second is not None:
            text = " ".join(text.split()[:int(audio_16k.size / 16000 * self.words_per_second)])
        words = tuple(Word(w, 0.3 * i, 0.3 * (i + 1), 0.9) for i, w in
                      enumerate(text.split())) if word_probabilities else ()
        return Transcript(text, "en", audio_16k.size / 16000, words)

    async def transcribe_partial(self, audio_16k: np.ndarray, language: LanguageRequest = None,
                                 noisy: bool = False) -> Transcript | None:
        self.partial_requests += 1
        if self.asr_busy:
            return None
        return await self.transcribe(audio_16k, language, noisy=noisy)

    async def chat(self, request: ChatRequest) -> AsyncGenerator[LlmDelta, None]:  # type: ignore[override]
        self.requests.append(request)
        if self.fail_chat:
            raise RuntimeError("llm exploded")
        try:
            scripted = self.scripted_calls and request.tool_choice != "none"
            call = self.tool_call or (self.scripted_calls.pop(0) if scripted else None)
            if call is not None:
                yield LlmDelta(kind="tool_call", name=call[0], arguments=call[1])
            else:
                for tok in self.tokens:
                    if self.token_delay:
                        await asyncio.sleep(self.token_delay)
                    yield LlmDelta(kind="text", text=tok)
            yield LlmDelta(kind="done", prompt_tokens=20, cached_tokens=10,
                           completion_tokens=len(self.tokens), finish_reason="stop")
        except (asyncio.CancelledError, GeneratorExit):
            self.chat_cancelled += 1
            raise

    async def speak(self, text: str, voice: str, speed: float = 1.0) -> AsyncGenerator[SpeechChunk, None]:  # type: ignore[override]
        self.spoken.append(text)
        try:
            words = text.split()
            dur = 0.25 * len(words)
            t = np.arange(int(24000 * dur)) / 24000
            audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            timed = tuple(Word(w, 0.25 * i, 0.25 * (i + 1)) for i, w in enumerate(words))
            # each letter a phoneme sharing its word's time (letters are misaki symbols too)
            phones = tuple(Phone(ch, w.start_s + k * 0.25 / len(w.text),
                                 w.start_s + (k + 1) * 0.25 / len(w.text))
                           for w in timed for k, ch in enumerate(w.text))
            yield SpeechChunk(audio, 24000, text, timed, phones)
        except (asyncio.CancelledError, GeneratorExit):
            self.speak_cancelled += 1
            raise

    async def warm(self, messages: Sequence[dict[str, Any]], tools: Sequence[Any] = (),
                   tool_choice: str = "auto") -> None:
        self.warmed += 1
        self.warmed_with.append(list(messages))


class FakeTransport:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.new_event = asyncio.Event()
        self.closed: tuple[int, str] | None = None

    async def receive(self) -> str | bytes | None:
        return await self.inbox.get()

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))
        self.new_event.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.inbox.put_nowait(None)

    def push(self, event: dict[str, Any] | str | bytes) -> None:
        self.inbox.put_nowait(event if isinstance(event, (str, bytes)) else json.dumps(event))

    def types(self) -> list[str]:
        return [e["type"] for e in self.sent]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        async def _wait() -> dict[str, Any]:
            while True:
                hits = [e for e in self.sent if e["type"] == kind]
                if len(hits) >= count:
                    return hits[count - 1]
                self.new_event.clear()
                await self.new_event.wait()
        return await asyncio.wait_for(_wait(), timeout)


def session_options(**overrides: Any) -> tuple[SessionOptions, VadOptions]:
    """Test options; each override goes to whichever options group has the field."""
    session: dict[str, Any] = {"system_prompt": "You are a test.",
                               "voices": {"alloy": "heart", "heart": "heart",
                                          "en-US-AvaNeural": "heart"}}
    vad: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in VadOptions.model_fields:
            vad[key] = value
        elif key in SessionOptions.model_fields:
            session[key] = value
        else:
            raise TypeError(f"no option {key!r}")
    return SessionOptions(**session), VadOptions(**vad)


def tone_pcm16(seconds: float, rate: int = 24000, freq: float = 300.0, amp: float = 0.3) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2").tobytes()


def silence_pcm16(seconds: float, rate: int = 24000) -> bytes:
    return bytes(2 * int(rate * seconds))


def append_event(pcm: bytes) -> dict[str, Any]:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}


class FixedEndOfTurn:
    """An end-of-turn model that always answers the same probability."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.calls = 0

    def probability(self, audio_16k: np.ndarray) -> float:
        self.calls += 1
        return self.p


async def start_session(dialect, pipeline: FakePipeline | None = None,  # type: ignore[no-untyped-def]
                        eot_model: Any = None, observer: Any = None,
                        transcription_only: bool = False,
                        transcription_models: Sequence[str] | None = None,
                        limits: LimitsOptions | None = None, asr: AsrOptions | None = None,
                        server_tools: Sequence[Any] = (), **overrides: Any):
    pipeline = pipeline or FakePipeline()
    session_opts, vad_opts = session_options(**overrides)
    session = RealtimeSession(dialect, pipeline, EnergyVad, session_opts, vad_opts,
                              eot_model=eot_model, observer=observer,
                              transcription_only=transcription_only,
                              transcription_models=transcription_models, limits=limits,
                              asr=asr, server_tools=server_tools)
    transport = FakeTransport()
    task = asyncio.create_task(session.serve(transport))
    await transport.wait_for("session.created")
    return session, transport, pipeline, task


async def stop_session(transport: FakeTransport, task: asyncio.Task[None],
                       dialect: Any = None) -> None:
    """End the session; with a dialect, check every event it sent against the SDK's models."""
    from tests.conformance import check_event

    transport.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)
    for event in transport.sent if dialect is not None else ():
        check_event(event, dialect)
