"""Partial transcripts through the official `openai` client on the real stack: while a recorded
user talks, Moonshine re-decodes the speech and the deltas arrive before the turn is committed;
what they said is the start of the final transcript."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.conformance import check_event
from tests.e2e.conftest import Server
from tests.e2e.test_spoken_turn import _paced
from tests.speech import clip, normalize, wer
from voxserve.client import pcm16_frames, read_wav
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.e2e

DELTA = "conversation.item.input_audio_transcription.delta"
TIMEOUT_S = 240


async def test_partial_deltas_arrive_while_the_user_talks(server: Server) -> None:
    from openai import AsyncOpenAI

    wav, reference = clip("0870")  # 7 s of LibriVox speech
    frames = pcm16_frames(read_wav(wav), 1.5, frame_ms=40)
    client = AsyncOpenAI(api_key=server.api_key, websocket_base_url=f"{server.ws}/v1")
    events: list[tuple[float, dict[str, Any]]] = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        async def recv_until(kind: str) -> dict[str, Any]:
            while True:
                raw = json.loads(await asyncio.wait_for(conn.recv_bytes(), TIMEOUT_S))
                check_event(raw, Dialect.GA)
                events.append((time.monotonic(), raw))
                if raw["type"] == kind:
                    return raw  # type: ignore[no-any-return]

        await recv_until("session.created")
        await conn.session.update(session={
            "type": "transcription",
            "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                                "turn_detection": {"type": "server_vad"}}}})
        await recv_until("session.updated")
        sender = asyncio.create_task(_paced(frames, lambda f: conn.input_audio_buffer.append(audio=f)))
        done = await recv_until("conversation.item.input_audio_transcription.completed")
        await sender
    kinds = [e["type"] for _, e in events]
    committed = kinds.index("input_audio_buffer.committed")
    deltas = [e for _, e in events if e["type"] == DELTA]
    early = [(t, e) for t, e in events[:committed] if e["type"] == DELTA]
    assert len(early) >= 3, f"{len(early)} partial deltas before the commit: {kinds}"
    assert all(e["item_id"] == done["item_id"] for e in deltas)
    # what was sent while talking is (nearly: the final decode hears the whole turn and may
    # still revise a word) the start of the final transcript
    said = normalize("".join(e["delta"] for _, e in early))
    final = normalize(done["transcript"])
    assert wer(" ".join(final[:len(said)]), " ".join(said)) <= 0.2, (said, done["transcript"])
    assert wer(reference, done["transcript"]) <= 0.25, done["transcript"]
    # the cadence while talking, reported for the record (the target lives in bench/)
    times = [t for t, _ in early]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    print(f"partials before commit: {len(early)}, gaps ms: {[round(g * 1000) for g in gaps]}")
