"""Word timestamps, visemes and blendshapes on a real spoken answer, through the
`azure-ai-voicelive` SDK: recorded speech in, the real ASR, LLM and TTS, every event checked
against the SDK's models, and the marks checked against the audio they came with."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_spoken_turn import _paced, _pcm16, _pcm_frames
from tests.e2e.voice_live import voice_live
from tests.speech import clip
from voxserve.client import read_wav

pytestmark = pytest.mark.e2e

RATE = 24_000


async def test_a_spoken_answer_carries_word_timestamps_visemes_and_blendshapes(
        server: Server) -> None:
    from azure.ai.voicelive.models import (
        Animation, AnimationOutputType, AudioTimestampType, RequestSession, ServerVad,
    )

    wav, _ = clip("0930")
    frames = _pcm_frames(read_wav(wav))
    async with voice_live(server) as vl:
        await vl.conn.session.update(session=RequestSession(
            modalities=["text", "audio", "animation"], voice="en-US-AvaNeural",
            turn_detection=ServerVad(silence_duration_ms=500),
            output_audio_timestamp_types=[AudioTimestampType.WORD],
            animation=Animation(outputs=[AnimationOutputType.VISEME_ID,
                                         AnimationOutputType.BLENDSHAPES])))
        updated = await vl.until("session.updated")
        sender = asyncio.create_task(_paced(frames, lambda f: vl.conn.input_audio_buffer.append(
            audio=f)))
        done = await vl.until("response.done")
        await sender
    events = vl.events
    assert updated["session"]["output_audio_timestamp_types"] == ["word"]
    assert not [e for e in events if e["type"] in ("error", "warning")]
    assert done["response"]["status"] == "completed"

    audio = _pcm16([e["delta"] for e in events if e["type"] == "response.audio.delta"])
    audio_ms = 1000 * audio.size / RATE
    transcript = next(e for e in events if e["type"] == "response.audio_transcript.done")
    words = [e for e in events if e["type"] == "response.audio_timestamp.delta"]
    # every word of the transcript has its time, in order, inside the audio
    expected = [w.strip("\"'“”‘’.,;:!?()[]") for w in transcript["transcript"].split()]
    assert [w["text"] for w in words] == [w for w in expected if w], transcript["transcript"]
    starts = [w["audio_offset_ms"] for w in words]
    assert starts == sorted(starts)
    assert max(w["audio_offset_ms"] + w["audio_duration_ms"] for w in words) <= audio_ms + 1
    # and the audio there is speech: each word's span is loud (within 35 dB of the peak)
    def level(a_ms: float, b_ms: float) -> float:
        span = audio[int(a_ms * RATE / 1000):max(int(b_ms * RATE / 1000), int(a_ms * RATE / 1000) + 1)]
        return float(np.sqrt(np.mean(span ** 2)))
    peak = max(level(t, t + 20) for t in np.arange(0, audio_ms - 20, 20))
    loud = [level(w["audio_offset_ms"], w["audio_offset_ms"] + w["audio_duration_ms"])
            > peak * 10 ** (-35 / 20) for w in words if w["audio_duration_ms"] >= 40]
    assert sum(loud) >= 0.95 * len(loud), loud

    visemes = [e for e in events if e["type"] == "response.animation_viseme.delta"]
    assert len(visemes) >= len(words)  # at least one mouth shape per word
    assert all(0 <= v["viseme_id"] <= 21 for v in visemes)
    times = [v["audio_offset_ms"] for v in visemes]
    assert all(b > a for a, b in zip(times, times[1:], strict=False)) and times[-1] <= audio_ms + 1
    assert visemes[-1]["viseme_id"] == 0  # the mouth closes at the end

    shapes = [e for e in events if e["type"] == "response.animation_blendshapes.delta"]
    count = sum(len(s["frames"]) for s in shapes)
    assert abs(count - audio_ms * 60 / 1000) <= 1
    assert all(len(row) == 55 and 0.0 <= min(row) and max(row) <= 1.0
               for s in shapes for row in s["frames"])
    kinds = [e["type"] for e in events]
    for closing in ("response.audio_timestamp.done", "response.animation_viseme.done",
                    "response.animation_blendshapes.done"):
        assert kinds.index("response.audio.done") < kinds.index(closing) < kinds.index(
            "response.done")
