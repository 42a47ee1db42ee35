"""One spoken turn end to end, driven by the official clients, on the real stack.

Real WebSocket, real Ray Serve, real packaged models, recorded human speech paced in real time.
Every event received is validated against the SDK's own models for its dialect.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
import websockets

from tests import long_answer
from tests.conformance import check_event
from tests.e2e.conftest import Server
from tests.speech import clip, wer
from voxserve.client import pcm16_frames, read_wav
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.e2e

FRAME_S = 0.04
TURN_TIMEOUT_S = 240  # generous: a busy 2-core CI box with ASR, LLM and TTS competing


def _pcm_frames(audio: np.ndarray, tail_silence_s: float = 1.5) -> list[str]:
    return pcm16_frames(audio, tail_silence_s, frame_ms=int(FRAME_S * 1000))


async def _paced(frames: list[str], append: Callable[[str], Awaitable[None]]) -> None:
    """Send frames as a microphone would: one every 40 ms of wall time."""
    t0 = time.monotonic()
    for i, frame in enumerate(frames):
        await append(frame)
        await asyncio.sleep(max(0.0, t0 + (i + 1) * FRAME_S - time.monotonic()))


def _pcm16(deltas: list[str]) -> np.ndarray:
    raw = b"".join(base64.b64decode(d) for d in deltas)
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768


def _assert_spoken_turn(events: list[dict[str, Any]], dialect: Dialect, reference: str,
                        whisper: Any) -> None:
    for ev in events:
        check_event(ev, dialect)
    kinds = [e["type"] for e in events]
    ga = dialect is Dialect.GA
    audio_delta = "response.output_audio.delta" if ga else "response.audio.delta"
    transcript_done = "response.output_audio_transcript.done" if ga else "response.audio_transcript.done"
    for needed in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                   "input_audio_buffer.committed", "response.created", audio_delta,
                   transcript_done, "response.done"):
        assert needed in kinds, f"{needed} missing from {kinds}"
    forbidden = {"response.audio.delta", "conversation.item.created"} if ga else {
        "response.output_audio.delta", "conversation.item.added", "conversation.item.done"}
    assert not forbidden & set(kinds), f"wrong dialect names: {forbidden & set(kinds)}"
    assert kinds.index("input_audio_buffer.speech_started") < kinds.index(
        "input_audio_buffer.speech_stopped") < kinds.index("input_audio_buffer.committed")

    heard = next(e for e in events
                 if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert wer(reference, heard["transcript"]) <= 0.25, heard["transcript"]

    done = events[kinds.index("response.done")]
    assert done["response"]["status"] == "completed", done
    usage = done["response"]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    answer = events[kinds.index(transcript_done)]["transcript"]
    assert answer.strip(), "empty answer transcript"

    audio = _pcm16([e["delta"] for e in events if e["type"] == audio_delta])
    assert audio.size > 24000 * 0.5, "less than half a second of answer audio"
    assert float(np.sqrt(np.mean(audio ** 2))) > 0.01, "answer audio is silence"
    # the TTS padding is cut: the first delta is audible within its first 40 ms
    first = _pcm16([next(e["delta"] for e in events if e["type"] == audio_delta)])[:960]
    loudest = max(float(np.sqrt(np.mean(first[i:i + 240] ** 2))) for i in range(0, 960, 240))
    # (the engine's padding was digital silence, about -140 dBFS; an onset is within 26 dB of
    # the answer's level)
    level = float(np.sqrt(np.mean(audio ** 2)))
    assert loudest > 0.05 * level, f"the first 40 ms of answer audio are silent ({loudest:.4f})"
    from voxserve.audio.resample import resample
    spoken = whisper.transcribe(resample(audio, 24000, 16000), "en").text
    assert wer(answer, spoken) <= 0.35, f"TTS said {spoken!r} for {answer!r}"


async def _collect_until_done(recv: Callable[[], Awaitable[dict[str, Any]]],
                              events: list[dict[str, Any]]) -> None:
    while True:
        ev = await recv()
        events.append(ev)
        if ev["type"] == "response.done":
            return


async def _speak_and_collect(recv: Callable[[], Awaitable[dict[str, Any]]],
                             append: Callable[[str], Awaitable[None]], frames: list[str],
                             events: list[dict[str, Any]]) -> None:
    """After a session.update: expect session.updated, then stream the utterance in real time
    and collect every event up to the answer's response.done."""
    updated = await asyncio.wait_for(recv(), 60)
    if updated["type"] == "conversation.created":  # beta announces its conversation first
        events.append(updated)
        updated = await asyncio.wait_for(recv(), 60)
    assert updated["type"] == "session.updated", updated
    events.append(updated)
    sender = asyncio.create_task(_paced(frames, append))
    await asyncio.wait_for(_collect_until_done(recv, events), TURN_TIMEOUT_S)
    await sender


@pytest.mark.parametrize("beta", [False, True], ids=["ga", "beta"])
async def test_openai_sdk_spoken_turn(server: Server, whisper: Any, beta: bool) -> None:
    from openai import AsyncOpenAI

    wav, reference = clip("0880")
    frames = _pcm_frames(read_wav(wav))
    client = AsyncOpenAI(api_key=server.api_key, websocket_base_url=f"{server.ws}/v1")
    connect = client.beta.realtime.connect if beta else client.realtime.connect
    model = "gpt-4o-realtime-preview" if beta else "gpt-realtime"
    events: list[dict[str, Any]] = []
    async with connect(model=model) as conn:
        async def recv() -> dict[str, Any]:
            raw = json.loads(await conn.recv_bytes())
            # the SDK's own parser must give the class the type names
            parsed = conn.parse_event(json.dumps(raw))
            assert parsed.type == raw["type"]
            return raw  # type: ignore[no-any-return]

        first = await asyncio.wait_for(recv(), 60)
        assert first["type"] == "session.created"
        events.append(first)
        if beta:
            await conn.session.update(session={
                "modalities": ["text", "audio"], "input_audio_format": "pcm16",
                "input_audio_transcription": {"model": "whisper-1"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}})
        else:
            await conn.session.update(session={
                "type": "realtime", "output_modalities": ["audio"],
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                    "transcription": {"model": "whisper-1"},
                                    "turn_detection": {"type": "server_vad"}},
                          "output": {"voice": "alloy"}}})
        await _speak_and_collect(recv, lambda f: conn.input_audio_buffer.append(audio=f),
                                 frames, events)
    _assert_spoken_turn(events, Dialect.BETA if beta else Dialect.GA, reference, whisper)


async def test_voice_live_sdk_spoken_turn(server: Server, whisper: Any) -> None:
    from azure.ai.voicelive.aio import connect
    from azure.ai.voicelive.models import AudioInputTranscriptionOptions, RequestSession, ServerVad
    from azure.core.credentials import AzureKeyCredential

    wav, reference = clip("0930")
    frames = _pcm_frames(read_wav(wav))
    events: list[dict[str, Any]] = []
    async with connect(endpoint=server.http, credential=AzureKeyCredential(server.api_key),
                       model="gpt-4o") as conn:
        async def recv() -> dict[str, Any]:
            event = await conn.recv()
            return dict(event.as_dict())

        first = await asyncio.wait_for(recv(), 60)
        assert first["type"] == "session.created"
        events.append(first)
        await conn.session.update(session=RequestSession(
            modalities=["text", "audio"], voice="alloy", input_audio_format="pcm16",
            output_audio_format="pcm16",
            input_audio_transcription=AudioInputTranscriptionOptions(model="whisper-1"),
            turn_detection=ServerVad(threshold=0.5, silence_duration_ms=500)))
        await _speak_and_collect(recv, lambda f: conn.input_audio_buffer.append(audio=f),
                                 frames, events)
    _assert_spoken_turn(events, Dialect.VOICE_LIVE, reference, whisper)


def test_health_and_auth_are_enforced(server: Server) -> None:
    with urllib.request.urlopen(f"{server.http}/health", timeout=30) as r:
        body = json.loads(r.read())
    assert body["status"] == "ok" and all(body["deployments"].values())

    async def attempt(headers: dict[str, str]) -> int | None:
        try:
            async with websockets.connect(f"{server.ws}/v1/realtime", additional_headers=headers):
                return None
        except websockets.InvalidStatus as exc:
            return int(exc.response.status_code)

    assert asyncio.run(attempt({})) == 401
    assert asyncio.run(attempt({"Authorization": "Bearer wrong"})) == 401
    assert asyncio.run(attempt({"api-key": server.api_key})) is None


BAD_MESSAGES = [
    ("not json", "invalid_json"),
    ('{"type": "no.such.event", "event_id": "e1"}', "unknown_event_type"),
    ('{"type": "conversation.item.delete", "event_id": "e2"}', "missing_required_parameter"),
    ('{"type": "conversation.item.truncate", "item_id": "x", "content_index": "0", "audio_end_ms": 5}',
     "invalid_type"),
    ('{"type": "input_audio_buffer.append", "audio": "***"}', "invalid_value"),
    ('{"type": "input_audio_buffer.commit"}', "input_audio_buffer_commit_empty"),
    ('{"type": "conversation.item.retrieve", "item_id": "missing"}', "item_not_found"),
    ('{"type": "response.cancel"}', "response_cancel_not_active"),
    ('{"type": "session.update", "session": {"type": "realtime", "colour": "blue"}}', "unknown_parameter"),
    ('{"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"voice": 7}}}}',
     "invalid_type"),
]


async def test_bad_client_messages_get_errors_and_the_session_survives(server: Server) -> None:
    url = f"{server.ws}/v1/realtime?model=gpt-realtime"
    async with websockets.connect(url, additional_headers={"api-key": server.api_key}) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        for message, code in BAD_MESSAGES:
            await ws.send(message)
            ev = json.loads(await asyncio.wait_for(ws.recv(), 30))
            check_event(ev, Dialect.GA)
            assert ev["type"] == "error" and ev["error"]["code"] == code, (message, ev)
            sent_id = json.loads(message).get("event_id") if message.startswith("{") else None
            assert ev["error"]["event_id"] == sent_id
            if '"session.update"' in message:  # only the bad field was dropped: the rest applied
                ev = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert ev["type"] == "session.updated", (message, ev)
        await ws.send(b"\x00binary")
        ev = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert ev["type"] == "error" and ev["error"]["code"] == "invalid_json"
        # still alive: a valid update is answered
        await ws.send(json.dumps({"type": "session.update",
                                  "session": {"type": "realtime", "instructions": "Be brief."}}))
        ev = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert ev["type"] == "session.updated"
        assert ev["session"]["instructions"] == "Be brief."


async def _until(ws: Any, kind: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Receive (validating every GA event, keeping them all) up to the first event of `kind`."""
    while True:
        ev = json.loads(await asyncio.wait_for(ws.recv(), TURN_TIMEOUT_S))
        check_event(ev, Dialect.GA)
        events.append(ev)
        if ev["type"] == kind:
            return ev  # type: ignore[no-any-return]


async def test_function_call_round_trip_with_the_real_llm(server: Server) -> None:
    url = f"{server.ws}/v1/realtime?model=gpt-realtime"
    events: list[dict[str, Any]] = []

    async def until(ws: Any, kind: str) -> dict[str, Any]:
        return await _until(ws, kind, events)

    async with websockets.connect(url, additional_headers={"api-key": server.api_key}) as ws:
        await until(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "output_modalities": ["audio"],
            "audio": {"input": {"turn_detection": None}},
            "tools": [{"type": "function", "name": "get_weather",
                       "description": "Current weather for a city.",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                      "required": ["city"]}}],
            "tool_choice": "auto"}}))
        await until(ws, "session.updated")
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "What is the weather in Oslo right now?"}]}}))
        # "required": this test is about the call's round trip through the protocol; whether the
        # model chooses to call on its own is tested in tests/models
        await ws.send(json.dumps({"type": "response.create",
                                  "response": {"tool_choice": "required"}}))
        done = await until(ws, "response.done")
        assert done["response"]["status"] == "completed"
        calls = [o for o in done["response"]["output"] if o["type"] == "function_call"]
        assert calls and calls[0]["name"] == "get_weather", done["response"]["output"]
        assert "oslo" in json.loads(calls[0]["arguments"])["city"].lower()
        kinds = [e["type"] for e in events]
        assert "response.function_call_arguments.done" in kinds
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": calls[0]["call_id"],
            "output": json.dumps({"temperature_c": 21, "sky": "sunny"})}}))
        await until(ws, "conversation.item.done")
        await ws.send(json.dumps({"type": "response.create", "response": {"tool_choice": "none"}}))
        final = await until(ws, "response.done")
        assert final["response"]["status"] == "completed", final["response"]
        message = final["response"]["output"][0]
        assert message["type"] == "message", final["response"]["output"]
        said = message["content"][0]["transcript"].lower()
        assert "21" in said or "twenty" in said or "sunny" in said, \
            f"the answer after the tool result does not use it: {said!r}"


async def test_barge_in_cancels_the_response_in_every_replica(server: Server) -> None:
    url = f"{server.ws}/v1/realtime?model=gpt-realtime"

    def stats() -> dict[str, Any]:
        with urllib.request.urlopen(f"{server.http}/stats", timeout=30) as r:
            return json.loads(r.read())["deployments"]  # type: ignore[no-any-return]

    before = stats()
    wav, _ = clip("0880")
    frames = _pcm_frames(read_wav(wav), tail_silence_s=1.0)
    events: list[dict[str, Any]] = []
    async with websockets.connect(url, additional_headers={"api-key": server.api_key}) as ws:
        async def until(kind: str) -> dict[str, Any]:
            return await _until(ws, kind, events)

        await until("session.created")
        # the answer must still be generating when the user cuts in: one that counts to forty
        for item in long_answer.conversation_items():
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create",
                                  "response": {"instructions": long_answer.INSTRUCTIONS}}))
        first_audio = await until("response.output_audio.delta")
        rid = first_audio["response_id"]
        sender = asyncio.create_task(_paced(frames, lambda f: ws.send(json.dumps(
            {"type": "input_audio_buffer.append", "audio": f}))))
        await until("input_audio_buffer.speech_started")
        done = await until("response.done")
        trail = [(e["type"], e.get("response_id") or e.get("response", {}).get("id"))
                 for e in events[-40:]]
        assert done["response"]["id"] == rid, f"the long answer ended before the barge-in: {trail}"
        assert done["response"]["status"] == "cancelled", \
            f"the count was not cut by the barge-in; it said {long_answer.said(done['response'])!r}"
        assert done["response"]["status_details"]["reason"] == "turn_detected"
        assert done["response"]["output"][0]["status"] == "incomplete"
        # the user's turn then goes on normally into a new response
        second = await until("response.done")
        await sender
    late = [e for e in events[events.index(done) + 1:] if e.get("response_id") == rid]
    assert not late, f"events of the cancelled response after its response.done: {late[:3]}"
    assert second["response"]["id"] != rid
    after = stats()
    assert after["llm"]["cancelled"] > before["llm"]["cancelled"], \
        f"the LLM replica saw no cancellation: before {before}, after {after}, answer {done}"


async def test_voice_live_client_driven_turn_with_the_sdk(server: Server) -> None:
    """input_audio.turn.start/append/end: the client, not the VAD, delimits the turn; a pause
    inside it does not end it."""
    from azure.ai.voicelive.aio import connect
    from azure.ai.voicelive.models import (
        AudioInputTranscriptionOptions, ClientEventInputAudioTurnAppend,
        ClientEventInputAudioTurnEnd, ClientEventInputAudioTurnStart, RequestSession, ServerVad,
    )
    from azure.core.credentials import AzureKeyCredential

    (first, ref1), (second, ref2) = clip("0930"), clip("0880")
    pause = np.zeros(int(24000 * 1.2), np.float32)  # longer than the 500 ms VAD silence rule
    frames = _pcm_frames(np.concatenate([read_wav(first), pause, read_wav(second)]),
                         tail_silence_s=0.2)
    events: list[dict[str, Any]] = []
    async with connect(endpoint=server.http, credential=AzureKeyCredential(server.api_key),
                       model="gpt-4o") as conn:
        async def recv() -> dict[str, Any]:
            return dict((await conn.recv()).as_dict())

        events.append(await asyncio.wait_for(recv(), 60))
        await conn.session.update(session=RequestSession(
            modalities=["text", "audio"], input_audio_format="pcm16",
            input_audio_transcription=AudioInputTranscriptionOptions(model="whisper-1"),
            turn_detection=ServerVad()))
        updated = await asyncio.wait_for(recv(), 60)
        assert updated["type"] == "session.updated"
        await conn.send(ClientEventInputAudioTurnStart(turn_id="turn-1"))
        await _paced(frames, lambda f: conn.send(
            ClientEventInputAudioTurnAppend(turn_id="turn-1", audio=f)))
        await conn.send(ClientEventInputAudioTurnEnd(turn_id="turn-1"))
        await asyncio.wait_for(_collect_until_done(recv, events), TURN_TIMEOUT_S)
    for ev in events:
        check_event(ev, Dialect.VOICE_LIVE)
    kinds = [e["type"] for e in events]
    assert "input_audio_buffer.speech_started" not in kinds  # the VAD stayed out of it
    assert kinds.count("input_audio_buffer.committed") == 1
    heard = next(e for e in events
                 if e["type"] == "conversation.item.input_audio_transcription.completed")
    # both halves, across the pause, are one turn
    assert wer(f"{ref1} {ref2}", heard["transcript"]) <= 0.25, heard["transcript"]
    assert events[-1]["response"]["status"] == "completed"
