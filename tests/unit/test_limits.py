"""The per-session limits (voxserve/session/limits.py, playback.py, session.py) on the real
session core with fake engines and a hand-moved clock where time matters."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from tests.unit.fakes import (
    Clock, FakePipeline, FakeTransport, append_event, start_session, stop_session, tone_pcm16,
)
from voxserve.config import LimitsOptions, VoxServeOptions
from voxserve.models.speech_trim import SENTENCE_PAUSE_S
from voxserve.protocol.dialects import Dialect
from voxserve.session.limits import InputLimits, Refusals, TokenBucket
from voxserve.session.playback import Playback

pytestmark = pytest.mark.unit


def errors(transport: FakeTransport, code: str) -> list[dict[str, Any]]:
    return [e["error"] for e in transport.sent if e["type"] == "error"
            and e["error"]["code"] == code]


async def settle(session: Any) -> None:
    while not session._outbox.empty():
        await asyncio.sleep(0)


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=4.0, capacity=5.0, clock=clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.25  # one token back
    assert bucket.take() and not bucket.take()
    clock.now += 60  # refills to the capacity, not past it
    assert sum(bucket.take() for _ in range(10)) == 5


def test_refusals_tell_the_first_at_once_then_once_a_second_with_the_count() -> None:
    clock = Clock()
    refusals = Refusals(clock)
    assert refusals.refused() == 1
    assert [refusals.refused() for _ in range(3)] == [None, None, None]
    clock.now += 1.0
    assert refusals.refused() == 4  # the three untold and this one
    assert refusals.total == 5


async def test_an_event_flood_is_refused_with_one_notice_and_the_session_goes_on() -> None:
    session, tr, _, task = await start_session(Dialect.GA)
    clock = Clock()
    session.input_limits = InputLimits(
        LimitsOptions(max_events_per_second=10, event_burst=20), clock)
    for _ in range(50):
        await session.handle_message(json.dumps({"type": "input_audio_buffer.clear"}))
    await settle(session)
    assert tr.types().count("input_audio_buffer.cleared") == 20
    [notice] = errors(tr, "rate_limited")
    assert "limits.max_events_per_second" in notice["message"] and "1 message" in notice["message"]
    clock.now += 1.0  # ten tokens back; the next notice counts what was refused untold
    for _ in range(12):
        await session.handle_message(json.dumps({"type": "input_audio_buffer.clear"}))
    await settle(session)
    assert tr.types().count("input_audio_buffer.cleared") == 30
    assert len(errors(tr, "rate_limited")) == 2
    # the 29 refused untold before, and the first of these two (the second waits its turn)
    assert "30 messages" in errors(tr, "rate_limited")[1]["message"]
    await stop_session(tr, task, Dialect.GA)


async def test_audio_faster_than_real_time_is_refused_past_the_burst() -> None:
    session, tr, _, task = await start_session(Dialect.GA)
    await session.handle_message(json.dumps({"type": "session.update", "session": {
        "type": "realtime", "audio": {"input": {"turn_detection": None}}}}))
    clock = Clock()
    session.input_limits = InputLimits(
        LimitsOptions(max_audio_speed=1.0, audio_burst_seconds=2.0), clock)
    for _ in range(3):  # 3 s at once against a 2 s burst
        await session.handle_message(json.dumps(append_event(tone_pcm16(1.0))))
    await settle(session)
    [refusal] = errors(tr, "rate_limited")
    assert refusal["param"] == "audio" and "limits.max_audio_speed" in refusal["message"]
    assert session.listener.buffer.total_samples / 16 == pytest.approx(2000, abs=50)
    clock.now += 1.0  # one second of audio per second is allowed
    await session.handle_message(json.dumps(append_event(tone_pcm16(1.0))))
    assert session.listener.buffer.total_samples / 16 == pytest.approx(3000, abs=50)
    await stop_session(tr, task, Dialect.GA)


async def test_message_size_and_nesting_follow_the_limits() -> None:
    limits = LimitsOptions(max_message_bytes=64 * 1024, max_json_depth=16)
    session, tr, _, task = await start_session(Dialect.GA, limits=limits)
    await session.handle_message(json.dumps(append_event(bytes(50_000))))  # ~67 KB of base64
    deep = {"type": "session.update", "session": {"metadata": {}}}
    node = deep["session"]["metadata"]
    for _ in range(20):
        node["x"] = {}
        node = node["x"]
    await session.handle_message(json.dumps(deep))
    await session.handle_message(json.dumps(append_event(bytes(4_800))))  # within: accepted
    await settle(session)
    [big] = errors(tr, "message_too_large")
    assert "limits.max_message_bytes" in big["message"]
    assert any("limits.max_json_depth" in e["message"] for e in errors(tr, "invalid_json"))
    assert len([e for e in tr.sent if e["type"] == "error"]) == 2
    await stop_session(tr, task, Dialect.GA)


async def test_items_past_the_limit_are_deleted_and_the_client_is_told() -> None:
    session, tr, _, task = await start_session(
        Dialect.GA, limits=LimitsOptions(max_conversation_items=10))
    for i in range(12):
        await session.handle_message(json.dumps({"type": "conversation.item.create", "item": {
            "id": f"item_{i}", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": f"note {i}"}]}}))
    await settle(session)
    deleted = [e["item_id"] for e in tr.sent if e["type"] == "conversation.item.deleted"]
    assert deleted == ["item_0", "item_1"]
    assert len(session.conversation) == 10
    await stop_session(tr, task, Dialect.GA)


async def test_an_idle_session_expires_and_a_busy_one_does_not() -> None:
    session, tr, _, task = await start_session(
        Dialect.GA, limits=LimitsOptions(idle_timeout_seconds=1.5))
    await asyncio.wait_for(task, 10)  # ends on its own: the close ends the receive loop
    [expired] = errors(tr, "session_expired")
    assert "limits.idle_timeout_seconds" in expired["message"]
    assert tr.closed == (1000, "session expired")

    busy, btr, _, btask = await start_session(
        Dialect.GA, limits=LimitsOptions(idle_timeout_seconds=1.5))
    for _ in range(6):  # a message every half second for three seconds keeps it open
        await busy.handle_message(json.dumps({"type": "input_audio_buffer.clear"}))
        await asyncio.sleep(0.5)
    assert not btask.done() and not errors(btr, "session_expired")
    await stop_session(btr, btask, Dialect.GA)


class StuckTransport(FakeTransport):
    """A client whose socket fills after `accepts` messages: every later send blocks."""

    def __init__(self, accepts: int) -> None:
        super().__init__()
        self.accepts = accepts

    async def send(self, text: str) -> None:
        if len(self.sent) >= self.accepts:
            await asyncio.Event().wait()
        await super().send(text)


async def test_a_client_that_stops_reading_is_closed_and_its_work_cancelled() -> None:
    from voxserve.session.session import RealtimeSession
    from tests.unit.fakes import EnergyVad, session_options

    pipeline = FakePipeline(tokens=["word "] * 400, token_delay=0.005)
    options, vad = session_options()
    session = RealtimeSession(Dialect.GA, pipeline, EnergyVad, options, vad,
                              limits=LimitsOptions(slow_client_seconds=0.3))
    transport = StuckTransport(accepts=3)
    task = asyncio.create_task(session.serve(transport))
    transport.push({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
    transport.push({"type": "response.create"})
    await asyncio.wait_for(task, 10)  # the session ends by itself, without an exception
    assert transport.closed is not None and transport.closed[0] == 1008
    assert "limits.slow_client_seconds" in transport.closed[1]
    assert pipeline.chat_cancelled == 1  # the answer it was not reading stopped too
    assert session.responder.active is None


SECOND = np.zeros(100, np.float32)  # one second at 100 Hz


def test_playback_paces_past_the_lead_and_a_flush_resets_it() -> None:
    clock = Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    async def run() -> None:
        playback = Playback(max_lead_s=10.0, clock=clock, sleep=sleep)
        for _ in range(10):  # ten seconds go out at once
            await playback.pace(SECOND, 100)
        assert slept == [] and playback.lead_s() == pytest.approx(10.0)
        await playback.pace(SECOND, 100)  # the eleventh waits for one second of playback
        assert slept == [pytest.approx(1.0)]
        clock.now += 4.0  # four seconds played: four more go at once
        for _ in range(4):
            await playback.pace(SECOND, 100)
        assert len(slept) == 1
        playback.flush()  # barge-in: the client dropped what it had
        assert playback.lead_s() == 0.0
        for _ in range(10):
            await playback.pace(SECOND, 100)
        assert len(slept) == 1 and playback.paced_s == pytest.approx(1.0)
    asyncio.run(run())


async def test_a_long_answer_is_paced_to_the_lead_and_arrives_whole() -> None:
    # 12 words of fake speech are 3 s of audio and 3 sentence pauses; with a 1 s lead most waits
    pipeline = FakePipeline(tokens=["one two three. "] * 4)
    session, tr, _, task = await start_session(
        Dialect.GA, pipeline, limits=LimitsOptions(max_audio_lead_seconds=1.0))
    await session.handle_message(json.dumps({"type": "response.create"}))
    await tr.wait_for("response.done", timeout=20)
    assert session.responder.playback.paced_s > 1.0
    audio_ms = sum(len(e["delta"]) * 3 // 4 for e in tr.sent
                   if e["type"] == "response.output_audio.delta") / 48
    assert audio_ms == pytest.approx(3000 + 3 * 1000 * SENTENCE_PAUSE_S, rel=0.05)
    await stop_session(tr, task, Dialect.GA)


def test_sessions_per_replica_must_leave_room_in_the_ingress() -> None:
    with pytest.raises(ValidationError, match="max_sessions_per_replica"):
        VoxServeOptions.model_validate({"limits": {"max_sessions_per_replica": 600}})
    ok = VoxServeOptions.model_validate({"limits": {"max_sessions_per_replica": 600},
                                         "deployments": {"ingress": {
                                             "max_ongoing_requests": 700}}})
    assert ok.limits.max_sessions_per_replica == 600
