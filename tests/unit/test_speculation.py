"""Speculative answers: the LLM starts on the pause's words before the turn is decided; the
response adopts that stream when the turn ends there, and speech that resumes (or a changed
request) discards it, cancelling the LLM call and reporting the outcome."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from tests.unit.fakes import (
    FakePipeline, FakeTransport, append_event, silence_pcm16, start_session, stop_session, tone_pcm16,
)
from voxserve.models.base import ChatRequest, LlmDelta
from voxserve.protocol.dialects import Dialect
from voxserve.session.speculation import Speculation

pytestmark = pytest.mark.unit


class _Observer:
    """Records what the session reports; only speculations are looked at here."""

    def __init__(self) -> None:
        self.speculations: list[tuple[str, float]] = []

    def speculation(self, outcome: str, seconds: float) -> None:
        self.speculations.append((outcome, seconds))

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return lambda *args, **kwargs: None


class _WatchedPipeline(FakePipeline):
    """Notes, per LLM call, whether the turn had been decided (speech_stopped sent) yet."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transport: FakeTransport | None = None
        self.decided_at_call: list[bool] = []

    async def chat(self, request: ChatRequest) -> AsyncGenerator[LlmDelta, None]:  # type: ignore[override]
        assert self.transport is not None
        self.decided_at_call.append("input_audio_buffer.speech_stopped" in self.transport.types())
        async for delta in super().chat(request):
            yield delta


async def _session(silence_ms: int, **kwargs: Any):  # type: ignore[no-untyped-def]
    observer = _Observer()
    pipe = _WatchedPipeline(token_delay=kwargs.pop("token_delay", 0.0),
                            transcript=kwargs.pop("transcript", "Book a table for two."))
    session, tr, _, task = await start_session(Dialect.GA, pipe, observer=observer, **kwargs)
    pipe.transport = tr
    tr.push({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "gpt-4o-transcribe"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": silence_ms}}}}})
    await tr.wait_for("session.updated")
    return observer, pipe, tr, task


async def _paced(tr: FakeTransport, pcm: bytes, step_s: float = 0.04) -> None:
    """Microphone-sized appends with a turn of the loop between them, so a decode started at a
    pause can finish while the silence is still arriving (as it does in real time)."""
    step = int(24000 * step_s) * 2
    for i in range(0, len(pcm), step):
        tr.push(append_event(pcm[i:i + step]))
        await asyncio.sleep(0.005)


async def _until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def _user_words(request: ChatRequest) -> str:
    return str([m for m in request.messages if m["role"] == "user"][-1]["content"])


async def test_the_answer_starts_at_the_pause_and_is_adopted_when_the_turn_ends_there() -> None:
    observer, pipe, tr, task = await _session(600)
    await _paced(tr, tone_pcm16(0.6) + silence_pcm16(1.0))
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    assert len(pipe.requests) == 1 and pipe.decided_at_call == [False]  # before the turn ended
    assert pipe.requests[0].request_id.startswith("spec_") and pipe.chat_cancelled == 0
    assert [o for o, _ in observer.speculations] == ["adopted"]
    text = "".join(e["delta"] for e in tr.sent if e["type"] == "response.output_audio_transcript.delta")
    assert text == "".join(pipe.tokens)  # the kept deltas and the rest, each once, in order
    await stop_session(tr, task, Dialect.GA)


async def test_speech_that_resumes_cancels_the_speculation_and_the_answer_hears_the_whole_turn(
        ) -> None:
    observer, pipe, tr, task = await _session(800, token_delay=0.2,
                                              transcript="please book a table for two tonight")
    pipe.words_per_second = 3.0  # each decode hears the words spoken so far
    await _paced(tr, tone_pcm16(0.7) + silence_pcm16(0.4))  # a pause, not a turn end
    await _until(lambda: len(pipe.requests) == 1)
    assert "input_audio_buffer.speech_stopped" not in tr.types()
    await _paced(tr, tone_pcm16(1.0) + silence_pcm16(1.2))  # the user goes on
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    assert pipe.chat_cancelled == 1  # the speculative call was cancelled, not left to run
    assert [o for o, _ in observer.speculations] == ["resumed", "adopted"]
    first, final = pipe.requests
    item = await tr.wait_for("conversation.item.input_audio_transcription.completed")
    assert _user_words(final) == item["transcript"] != _user_words(first)
    assert len(_user_words(final).split()) > len(_user_words(first).split())
    assert tr.types().count("input_audio_buffer.speech_started") == 1  # one turn throughout
    await stop_session(tr, task, Dialect.GA)


async def test_a_changed_request_discards_the_speculation_as_mismatched() -> None:
    observer, pipe, tr, task = await _session(800, token_delay=0.2)
    await _paced(tr, tone_pcm16(0.6) + silence_pcm16(0.4))
    await _until(lambda: len(pipe.requests) == 1)
    tr.push({"type": "session.update", "session": {"type": "realtime",
                                                   "instructions": "Answer in one word."}})
    await tr.wait_for("session.updated", count=2)
    tr.push(append_event(silence_pcm16(0.8)))
    await tr.wait_for("response.done")
    assert [o for o, _ in observer.speculations] == ["mismatched"] and pipe.chat_cancelled == 1
    assert pipe.requests[-1].messages[0]["content"] == "Answer in one word."
    await stop_session(tr, task, Dialect.GA)


async def test_no_speculation_when_switched_off_or_when_no_response_follows() -> None:
    observer, pipe, tr, task = await _session(600, speculative_answers=False)
    await _paced(tr, tone_pcm16(0.6) + silence_pcm16(1.0))
    await tr.wait_for("response.done")
    assert pipe.decided_at_call == [True] and observer.speculations == []
    await stop_session(tr, task, Dialect.GA)

    observer, pipe, tr, task = await _session(600)
    tr.push({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "gpt-4o-transcribe"},
        "turn_detection": {"type": "server_vad", "create_response": False}}}}})
    await tr.wait_for("session.updated", count=2)
    await _paced(tr, tone_pcm16(0.6) + silence_pcm16(1.0))
    await tr.wait_for("conversation.item.input_audio_transcription.completed")
    assert pipe.requests == [] and observer.speculations == []
    await stop_session(tr, task, Dialect.GA)


async def test_unfinished_words_start_nothing() -> None:
    observer, pipe, tr, task = await _session(600, transcript="book a table for")
    await _paced(tr, tone_pcm16(0.6) + silence_pcm16(1.0))
    await tr.wait_for("response.done")
    assert pipe.decided_at_call == [True] and observer.speculations == []
    await stop_session(tr, task, Dialect.GA)


# ---- the Speculation itself -----------------------------------------------------------------

def _request(**changes: Any) -> ChatRequest:
    base = ChatRequest(messages=[{"role": "user", "content": "hi."}], request_id="spec_1")
    return dataclasses.replace(base, **changes)


def _speculation(pipe: FakePipeline, reports: list[tuple[str, float]]) -> Speculation:
    return Speculation(pipe, _request(), asyncio.ensure_future,
                       lambda outcome, s: reports.append((outcome, s)))


async def test_matching_ignores_only_the_request_id() -> None:
    spec = _speculation(FakePipeline(), [])
    assert spec.matches(_request(request_id="resp_9"))
    assert not spec.matches(_request(temperature=0.2))
    assert not spec.matches(_request(messages=[{"role": "user", "content": "hi there."}]))
    spec.discard("unused")


async def test_adopting_replays_the_kept_deltas_then_the_rest() -> None:
    pipe, reports = FakePipeline(token_delay=0.02), []
    spec = _speculation(pipe, reports)
    await _until(lambda: len(spec._deltas) >= 2)  # some kept before the turn ended
    got = [d async for d in spec.adopt()]
    assert [d.text for d in got if d.kind == "text"] == pipe.tokens and got[-1].kind == "done"
    assert [o for o, _ in reports] == ["adopted"] and pipe.chat_cancelled == 0


async def test_a_discarded_speculation_cancels_the_call_and_reports_once() -> None:
    pipe, reports = FakePipeline(token_delay=0.5), []
    spec = _speculation(pipe, reports)
    await _until(lambda: len(pipe.requests) == 1)
    spec.discard("resumed")
    spec.discard("unused")  # a second discard changes nothing
    await _until(lambda: pipe.chat_cancelled == 1)
    assert [o for o, _ in reports] == ["resumed"] and reports[0][1] >= 0


async def test_an_llm_failure_reaches_the_adopting_response() -> None:
    pipe, reports = FakePipeline(), []
    pipe.fail_chat = True
    spec = _speculation(pipe, reports)
    await _until(lambda: spec.finished)
    with pytest.raises(RuntimeError, match="llm exploded"):
        [d async for d in spec.adopt()]


# ---- the user's words prefilled while they talk ----------------------------------------------

async def _talking_session(create_response: bool = True):  # type: ignore[no-untyped-def]
    from voxserve.config import AsrOptions

    observer, pipe, tr, task = await _session(
        600, asr=AsrOptions(partial_interval_ms=100),
        transcript="please book a table for two at eight tonight near the river thanks")
    pipe.words_per_second = 4.0
    if not create_response:
        tr.push({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "create_response": False}}}}})
        await tr.wait_for("session.updated", count=2)
    return pipe, tr, task


async def test_the_words_so_far_are_prefilled_while_the_user_talks() -> None:
    pipe, tr, task = await _talking_session()
    pipe.warmed_with.clear()  # the session's own warm-up of the system prompt
    await _paced(tr, tone_pcm16(3.0))
    prefilled = [m[-1]["content"] for m in pipe.warmed_with]
    assert len(prefilled) >= 2, prefilled
    deltas = "".join(e["delta"] for e in tr.sent
                     if e["type"] == "conversation.item.input_audio_transcription.delta")
    # each is the transcript sent so far, and the next waits for four more words
    assert all(deltas.startswith(p) for p in prefilled), (prefilled, deltas)
    counts = [len(p.split()) for p in prefilled]
    assert all(b >= a + 4 for a, b in zip(counts, counts[1:], strict=False)), counts
    assert pipe.warmed_with[-1][0] == {"role": "system", "content": "You are a test."}
    await _paced(tr, silence_pcm16(1.0))
    await tr.wait_for("response.done")
    await stop_session(tr, task, Dialect.GA)


async def test_nothing_is_prefilled_when_no_answer_follows() -> None:
    pipe, tr, task = await _talking_session(create_response=False)
    pipe.warmed_with.clear()
    await _paced(tr, tone_pcm16(3.0))
    assert any(e["type"] == "conversation.item.input_audio_transcription.delta" for e in tr.sent)
    assert pipe.warmed_with == []
    await stop_session(tr, task, Dialect.GA)
