"""Speculative answers through the official `openai` client on the real stack: a recorded user
says a complete sentence, pauses (shorter than the turn's silence) and goes on. The answer the
LLM started at the pause is cancelled in the LLM replica (counted there and in the ingress's
speculation outcomes), the turn ends once, and its one answer is built on the whole turn."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
import pytest

from tests.conformance import check_event
from tests.e2e.conftest import Server
from tests.e2e.test_limits import _stats, _until_stats
from tests.e2e.test_spoken_turn import _paced
from tests.speech import clip, wer
from voxserve.client import RATE, pcm16_frames, read_wav
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.e2e

TIMEOUT_S = 240
PAUSE_S = 0.8  # past the 200 ms pause and the decode; well inside the turn's 2 s of silence


async def test_a_pause_then_more_words_cancels_the_speculative_answer(server: Server) -> None:
    from openai import AsyncOpenAI

    (first_wav, first), (second_wav, second) = clip("0880"), clip("0890")
    audio = np.concatenate([read_wav(first_wav), np.zeros(int(PAUSE_S * RATE), np.float32),
                            read_wav(second_wav)])
    frames = pcm16_frames(audio, 2.5)
    before = _stats(server)
    resumed_before = before["speculations"].get("resumed", 0)
    cancelled_before = before["deployments"]["llm"]["cancelled"]
    client = AsyncOpenAI(api_key=server.api_key, websocket_base_url=f"{server.ws}/v1")
    events: list[tuple[float, dict[str, Any]]] = []  # as received, with the time
    async with client.realtime.connect(model="gpt-realtime") as conn:
        async def recv_until(kind: str) -> dict[str, Any]:
            while True:
                raw = json.loads(await asyncio.wait_for(conn.recv_bytes(), TIMEOUT_S))
                check_event(raw, Dialect.GA)
                assert raw["type"] != "error", raw
                events.append((time.monotonic(), raw))
                if raw["type"] == kind:
                    return raw  # type: ignore[no-any-return]

        await recv_until("session.created")
        await conn.session.update(session={
            "type": "realtime", "output_modalities": ["text"],
            "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                                "turn_detection": {"type": "server_vad",
                                                   "silence_duration_ms": 2000}}}})
        await recv_until("session.updated")
        receiver = asyncio.create_task(recv_until("response.done"))
        sender = asyncio.create_task(_paced(frames, lambda f: conn.input_audio_buffer.append(
            audio=f)))
        # no speculation discarded as resumed: a timeout
        await _until_stats(server, lambda s: s["speculations"].get("resumed", 0) > resumed_before)
        resumed_at = time.monotonic()
        done = await receiver
        await sender
    kinds = [e["type"] for _, e in events]
    # the LLM was asked at the pause and cancelled when the user went on, before the turn ended
    # (its speech_stopped comes 2 s after the second sentence)
    stopped_at = next(t for t, e in events if e["type"] == "input_audio_buffer.speech_stopped")
    assert resumed_at < stopped_at
    transcript = next(e for _, e in events
                      if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert kinds.count("input_audio_buffer.speech_started") == 1  # one turn, paused once
    assert kinds.count("response.created") == 1 and done["response"]["status"] == "completed"
    # the one answer is on the item that holds both sentences
    assert wer(f"{first} {second}", transcript["transcript"]) <= 0.25, transcript["transcript"]
    assert done["response"]["usage"]["input_tokens"] > 0
    after = await _until_stats(server, lambda s: s["deployments"]["llm"]["cancelled"]
                               > cancelled_before)  # else the LLM replica saw no cancellation
    assert after["speculations"].get("resumed", 0) == resumed_before + 1
