"""LiveKit Agents' own OpenAI realtime client, unchanged, through a spoken turn on the real stack.

`livekit-plugins-openai`'s `realtime.RealtimeModel` is driven headless: no LiveKit server and no
media transport, only its `RealtimeSession` (the object an `AgentSession` drives), fed recorded
speech as `rtc.AudioFrame`s in real time. Two of its modes: pointed at a base URL (GA on
`/v1/realtime`) and `with_azure(api_version=...)` (flat beta-shaped updates on Azure's dated
route `/openai/realtime`, with no `OpenAI-Beta` header). What the framework sees is asserted
(user transcript, agent transcript, agent audio); every event it received is validated against
the openai SDK's models for the dialect, and what it sent is printed for the record.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from tests.conformance import check_event
from tests.e2e.conftest import Server
from tests.e2e.test_spoken_turn import TURN_TIMEOUT_S, _paced, _pcm_frames
from tests.speech import clip, wer
from voxserve.client import read_wav
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.e2e

RATE = 24000
# In Azure mode LiveKit renames the beta server events to GA names before its hook sees them;
# this undoes that, so what is validated is what came over the wire.
_BETA_NAMES = {
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "conversation.item.added": "conversation.item.created",
}


@dataclass
class _Wire:
    """Everything the client queued and received, and the futures the test waits on."""
    azure: bool
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    first_reply: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    response_done: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    def on_sent(self, event: dict[str, Any]) -> None:
        self.sent.append(json.loads(json.dumps(event)))  # a copy: the record must not change later

    def on_received(self, event: dict[str, Any]) -> None:
        event = dict(event)
        if self.azure:
            event["type"] = _BETA_NAMES.get(event["type"], event["type"])
        self.received.append(event)
        if event["type"] in ("session.updated", "error") and not self.first_reply.done():
            self.first_reply.set_result(event)
        if event["type"] == "response.done" and not self.response_done.done():
            self.response_done.set_result(event)

    def summary(self) -> str:
        def runs(events: list[dict[str, Any]]) -> list[str]:
            out: list[str] = []
            for ev in events:
                if out and out[-1].split(" x")[0] == ev["type"]:
                    head, _, n = out[-1].partition(" x")
                    out[-1] = f"{head} x{int(n or 1) + 1}"
                else:
                    out.append(ev["type"])
            return out
        update = next((e for e in self.sent if e["type"] == "session.update"), None)
        return "\n".join([
            f"sent: {runs(self.sent)}",
            f"first session.update: {json.dumps(update)}",
            f"received: {runs(self.received)}",
            f"received counts: {dict(Counter(e['type'] for e in self.received))}",
            f"errors: {[e for e in self.received if e['type'] == 'error']}",
        ])


async def _message_text_and_audio(generation: Any) -> tuple[str, np.ndarray]:
    """Drain a LiveKit generation: every message's text stream and audio stream."""
    texts: list[str] = []
    chunks: list[np.ndarray] = []

    async def text(stream: Any) -> None:
        async for piece in stream:
            texts.append(str(piece))

    async def audio(stream: Any) -> None:
        async for frame in stream:
            assert frame.sample_rate == RATE and frame.num_channels == 1, frame
            chunks.append(np.frombuffer(bytes(frame.data), "<i2").astype(np.float32) / 32768)

    async for message in generation.message_stream:
        await asyncio.gather(text(message.text_stream), audio(message.audio_stream))
    return "".join(texts), np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


@pytest.mark.parametrize("mode", ["base_url", "azure"])
async def test_livekit_realtime_model_spoken_turn(server: Server, whisper: Any, mode: str) -> None:
    import aiohttp
    from livekit import rtc
    from livekit.plugins.openai import realtime
    from openai.types.realtime.realtime_audio_input_turn_detection import ServerVad

    wav, reference = clip("0880")
    frames = _pcm_frames(read_wav(wav))
    # The one option set here is turn detection: the same server VAD the other e2e tests use,
    # instead of LiveKit's defaults (semantic VAD; 200 ms silence on Azure), so the turn ends
    # where the recording's long pause is and nowhere else. Everything else is LiveKit's own.
    vad = ServerVad(type="server_vad", silence_duration_ms=500)
    dialect = Dialect.BETA if mode == "azure" else Dialect.GA
    async with aiohttp.ClientSession() as http:
        if mode == "azure":
            model = realtime.RealtimeModel.with_azure(
                azure_deployment="gpt-realtime", azure_endpoint=server.http,
                api_key=server.api_key, api_version="2024-10-01-preview", turn_detection=vad,
                http_session=http)
        else:
            model = realtime.RealtimeModel(model="gpt-realtime", base_url=f"{server.http}/v1",
                                           api_key=server.api_key, turn_detection=vad,
                                           http_session=http)
        wire = _Wire(azure=mode == "azure")
        loop = asyncio.get_running_loop()
        transcript: asyncio.Future[str] = loop.create_future()
        generations: asyncio.Queue[Any] = asyncio.Queue()
        session = model.session()
        session.on("openai_client_event_queued", wire.on_sent)
        session.on("openai_server_event_received", wire.on_received)
        session.on("generation_created", generations.put_nowait)

        def on_transcript(ev: Any) -> None:
            if ev.is_final and not transcript.done():
                transcript.set_result(ev.transcript)

        session.on("input_audio_transcription_completed", on_transcript)
        try:
            reply = await asyncio.wait_for(wire.first_reply, 60)
            assert reply["type"] == "session.updated", \
                f"the server refused LiveKit's first session.update:\n{wire.summary()}"

            async def append(frame: str) -> None:
                pcm = base64.b64decode(frame)
                session.push_audio(rtc.AudioFrame(pcm, RATE, 1, len(pcm) // 2))

            sender = asyncio.create_task(_paced(frames, append))
            generation = await asyncio.wait_for(generations.get(), TURN_TIMEOUT_S)
            said, audio = await asyncio.wait_for(_message_text_and_audio(generation),
                                                 TURN_TIMEOUT_S)
            done = await asyncio.wait_for(wire.response_done, TURN_TIMEOUT_S)
            heard = await asyncio.wait_for(transcript, TURN_TIMEOUT_S)
            await sender
        finally:
            print(f"\n[livekit {mode}]\n{wire.summary()}")
            await session.aclose()
            await model.aclose()

    errors = [e for e in wire.received if e["type"] == "error"]
    assert not errors, f"server errors during the turn:\n{wire.summary()}"
    for ev in wire.received:
        check_event(ev, dialect)
    assert wire.sent[0]["type"] == "session.update"
    assert done["response"]["status"] == "completed", done
    # what the framework itself surfaced: the user transcript, the agent transcript and audio
    assert wer(reference, heard) <= 0.25, heard
    assert said.strip(), "LiveKit saw no agent transcript"
    assert audio.size > RATE * 0.5, "LiveKit got less than half a second of agent audio"
    assert float(np.sqrt(np.mean(audio ** 2))) > 0.01, "the agent audio LiveKit got is silence"
    from voxserve.audio.resample import resample
    spoken = whisper.transcribe(resample(audio, RATE, 16000), "en").text
    assert wer(said, spoken) <= 0.35, f"TTS said {spoken!r} for {said!r}"
