"""Drop-in behaviour a migrating app relies on, through the official clients on the real stack:
a Voice Live app's first update keeps what it can and warns about the rest, transcription-only
sessions never answer, a pre-generated message is spoken as written, and an out-of-band answer
stays out of the conversation."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from tests.conformance import check_event
from tests.e2e.conftest import Server
from tests.speech import clip, wer
from tests.unit.test_field_outcomes import VOICE_LIVE_FIRST_UPDATE
from voxserve.audio.resample import resample
from voxserve.client import pcm16_frames, read_wav
from voxserve.protocol.dialects import Dialect
from tests.e2e.test_spoken_turn import _paced, _pcm16

pytestmark = pytest.mark.e2e

TIMEOUT_S = 240  # a turn on a busy 2-core box
ITEM_EVENTS = {"conversation.item.added", "conversation.item.done", "conversation.item.created"}


def _voice_live(server: Server) -> Any:
    from azure.ai.voicelive.aio import connect
    from azure.core.credentials import AzureKeyCredential

    return connect(endpoint=server.http, credential=AzureKeyCredential(server.api_key),
                   model="gpt-4o")


async def _until(recv: Any, kinds: set[str], events: list[dict[str, Any]],
                 dialect: Dialect) -> dict[str, Any]:
    """Collect events (each checked against the SDK's models) up to one of `kinds`."""
    while True:
        event = await asyncio.wait_for(recv(), TIMEOUT_S)
        check_event(event, dialect)
        events.append(event)
        if event["type"] in kinds:
            return event


async def test_a_voice_live_first_update_keeps_what_it_can_and_warns_about_the_rest(
        server: Server) -> None:
    events: list[dict[str, Any]] = []
    async with _voice_live(server) as conn:
        async def recv() -> dict[str, Any]:
            return dict((await conn.recv()).as_dict())

        await _until(recv, {"session.created"}, events, Dialect.VOICE_LIVE)
        await conn.session.update(session=VOICE_LIVE_FIRST_UPDATE)
        updated = await _until(recv, {"session.updated"}, events, Dialect.VOICE_LIVE)
    session = updated["session"]
    assert session["instructions"] == VOICE_LIVE_FIRST_UPDATE["instructions"]
    assert [t["name"] for t in session["tools"]] == ["get_weather"]
    assert session["turn_detection"]["type"] == "azure_semantic_vad"
    assert session["turn_detection"]["end_of_utterance_detection"]["timeout_ms"] == 2000
    assert session["input_audio_transcription"]["language"] == "es-MX"
    warned = {e["warning"]["param"] for e in events if e["type"] == "warning"}
    assert warned == {"session.voice", "session.voice.temperature"}
    assert session["input_audio_noise_reduction"] == {"type": "azure_deep_noise_suppression"}
    assert session["input_audio_echo_cancellation"]["type"] == "server_echo_cancellation"
    assert not [e for e in events if e["type"] == "error"]


@pytest.mark.parametrize("form", ["ga_intent", "beta_transcription_session"])
async def test_a_transcription_session_transcribes_and_never_answers(server: Server,
                                                                     form: str) -> None:
    from openai import AsyncOpenAI

    wav, reference = clip("0880")
    frames = pcm16_frames(read_wav(wav), 1.5, frame_ms=40)
    client = AsyncOpenAI(api_key=server.api_key, websocket_base_url=f"{server.ws}/v1")
    beta = form.startswith("beta")
    dialect = Dialect.BETA if beta else Dialect.GA
    connect = (client.beta.realtime.connect(model="gpt-4o-realtime-preview") if beta
               else client.realtime.connect(extra_query={"intent": "transcription"}))
    events: list[dict[str, Any]] = []
    async with connect as conn:
        async def recv() -> dict[str, Any]:
            return json.loads(await conn.recv_bytes())  # type: ignore[no-any-return]

        created = await _until(recv, {"session.created"}, events, dialect)
        turns = {"type": "server_vad", "silence_duration_ms": 500}
        if beta:
            await conn.transcription_session.update(session={
                "input_audio_format": "pcm16", "input_audio_noise_reduction": None,
                "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": turns})  # type: ignore[typeddict-item]
            await _until(recv, {"transcription_session.updated"}, events, dialect)
        else:
            assert created["session"]["type"] == "transcription"
            await conn.session.update(session={"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": turns}}})  # type: ignore[typeddict-item]
            await _until(recv, {"session.updated"}, events, dialect)
        sender = asyncio.create_task(_paced(frames, lambda f: conn.input_audio_buffer.append(
            audio=f)))
        done = await _until(recv, {"conversation.item.input_audio_transcription.completed"},
                            events, dialect)
        await sender
        await conn.response.create()  # a transcription session refuses to answer
        refusal = await _until(recv, {"error"}, events, dialect)
    assert wer(reference, done["transcript"]) <= 0.25, done["transcript"]
    assert "transcription session" in refusal["error"]["message"]
    kinds = [e["type"] for e in events]
    assert "input_audio_buffer.committed" in kinds
    assert not [k for k in kinds if k.startswith("response.")], kinds


async def test_a_pre_generated_message_is_spoken_as_written(server: Server, whisper: Any) -> None:
    text = "Thank you for calling. This call may be recorded for quality purposes."
    events: list[dict[str, Any]] = []
    async with _voice_live(server) as conn:
        async def recv() -> dict[str, Any]:
            return dict((await conn.recv()).as_dict())

        await _until(recv, {"session.created"}, events, Dialect.VOICE_LIVE)
        await conn.send({"type": "response.create", "response": {
            "pre_generated_assistant_message": {
                "type": "message", "role": "assistant",
                "content": [{"type": "text", "text": text}]}}})
        done = await _until(recv, {"response.done"}, events, Dialect.VOICE_LIVE)
    assert done["response"]["status"] == "completed"
    transcript = next(e for e in events if e["type"] == "response.audio_transcript.done")
    assert transcript["transcript"] == text
    audio = _pcm16([e["delta"] for e in events if e["type"] == "response.audio.delta"])
    heard = whisper.transcribe(resample(audio, 24000, 16000), "en").text
    assert wer(text, heard) <= 0.2, heard


async def test_an_out_of_band_answer_stays_out_of_the_conversation(server: Server) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key=server.api_key, websocket_base_url=f"{server.ws}/v1")
    events: list[dict[str, Any]] = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        async def recv() -> dict[str, Any]:
            return json.loads(await conn.recv_bytes())  # type: ignore[no-any-return]

        await _until(recv, {"session.created"}, events, Dialect.GA)
        await conn.response.create(response={
            "conversation": "none", "output_modalities": ["text"], "metadata": {"kind": "summary"},
            "input": [{"type": "message", "role": "user",
                       "content": [{"type": "input_text", "text": "Say hello."}]}]})
        done = await _until(recv, {"response.done"}, events, Dialect.GA)
    assert done["response"]["status"] == "completed" and done["response"]["output"]
    assert done["response"]["conversation_id"] is None
    assert done["response"]["metadata"] == {"kind": "summary"}
    assert not ITEM_EVENTS & {e["type"] for e in events}


async def test_include_logprobs_gives_word_log_probabilities(server: Server) -> None:
    from openai import AsyncOpenAI

    wav, reference = clip("0870")
    frames = pcm16_frames(read_wav(wav), 1.5, frame_ms=40)
    client = AsyncOpenAI(api_key=server.api_key, websocket_base_url=f"{server.ws}/v1")
    events: list[dict[str, Any]] = []
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        async def recv() -> dict[str, Any]:
            return json.loads(await conn.recv_bytes())  # type: ignore[no-any-return]

        await _until(recv, {"session.created"}, events, Dialect.GA)
        await conn.session.update(session={
            "type": "transcription", "include": ["item.input_audio_transcription.logprobs"],
            "audio": {"input": {"transcription": {"model": "whisper-1", "language": "en"},
                                "turn_detection": {"type": "server_vad"}}}})
        await _until(recv, {"session.updated"}, events, Dialect.GA)
        await _paced(frames, lambda f: conn.input_audio_buffer.append(audio=f))
        done = await _until(recv, {"conversation.item.input_audio_transcription.completed"},
                            events, Dialect.GA)
    assert wer(reference, done["transcript"]) <= 0.25, done["transcript"]
    tokens = [p["token"] for p in done["logprobs"]]
    assert " ".join(tokens).split() == done["transcript"].split()
    assert all(p["logprob"] <= 0.0 for p in done["logprobs"])


async def test_voice_live_agent_mode_is_refused_before_the_upgrade(server: Server) -> None:
    import websockets

    url = f"{server.ws}/voice-live/realtime?api-version=2026-04-10&agent-name=support-agent"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with websockets.connect(url, additional_headers={"api-key": server.api_key}):
            pass
    assert info.value.response.status_code == 400
    assert b"agent mode" in info.value.response.body


async def test_voice_live_response_fields_out_of_the_conversation(server: Server) -> None:
    """`previous_item_id: "root"`, `append_input_items`, `commit: false` and a per-response
    output format, through the Voice Live SDK on the real models."""
    events: list[dict[str, Any]] = []
    async with _voice_live(server) as conn:
        async def recv() -> dict[str, Any]:
            return dict((await conn.recv()).as_dict())

        await _until(recv, {"session.created"}, events, Dialect.VOICE_LIVE)
        await conn.send({"type": "conversation.item.create", "previous_item_id": "root",
                         "item": {"type": "message", "role": "system", "content": [
                             {"type": "input_text", "text": "Answer in one short sentence."}]}})
        await _until(recv, {"conversation.item.created", "error"}, events, Dialect.VOICE_LIVE)
        await conn.send({"type": "response.create", "response": {
            "commit": False, "output_audio_format": "g711_ulaw",
            "append_input_items": [{"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "Say hello."}]}]}})
        done = await _until(recv, {"response.done"}, events, Dialect.VOICE_LIVE)
    kinds = [e["type"] for e in events]
    assert "error" not in kinds, [e for e in events if e["type"] == "error"]
    created = kinds.index("response.created")
    # the appended user item joins the conversation first; the answer never does
    assert kinds.count("conversation.item.created") == 2
    assert max(i for i, k in enumerate(kinds) if k == "conversation.item.created") < created
    assert done["response"]["status"] == "completed"
    assert done["response"]["output_audio_format"] == "g711_ulaw"
    sizes = [len(base64.b64decode(e["delta"])) for e in events
             if e["type"] == "response.audio.delta"]
    assert sizes and max(sizes) == 800  # μ-law: one byte per 8 kHz sample, 100 ms deltas


async def test_ga_truncation_is_echoed_and_the_answer_still_comes(server: Server) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key=server.api_key, websocket_base_url=f"{server.ws}/v1")
    truncation = {"type": "retention_ratio", "retention_ratio": 0.5,
                  "token_limits": {"post_instructions": 1000}}
    events: list[dict[str, Any]] = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        async def recv() -> dict[str, Any]:
            return json.loads(await conn.recv_bytes())  # type: ignore[no-any-return]

        await _until(recv, {"session.created"}, events, Dialect.GA)
        await conn.session.update(session={"type": "realtime", "truncation": truncation,
                                           "output_modalities": ["text"]})
        updated = await _until(recv, {"session.updated"}, events, Dialect.GA)
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Say hello."}]})
        await conn.response.create()
        done = await _until(recv, {"response.done"}, events, Dialect.GA)
    assert updated["session"]["truncation"] == truncation
    assert done["response"]["status"] == "completed" and done["response"]["output"]
