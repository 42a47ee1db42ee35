"""Partial transcripts while the user talks: deltas before the commit, completed by the final."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.fakes import FakePipeline, append_event, silence_pcm16, start_session, stop_session, tone_pcm16
from voxserve.config import AsrOptions
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.unit

DELTA = "conversation.item.input_audio_transcription.delta"
SENTENCE = "please book a table for two at eight tonight near the river"


async def _talk(tr, seconds: float, step_s: float = 0.04) -> None:  # type: ignore[no-untyped-def]
    """Microphone-sized appends, each handled before the next (a decode may finish in between)."""
    for _ in range(int(seconds / step_s)):
        tr.push(append_event(tone_pcm16(step_s)))
        await asyncio.sleep(0.005)


async def _session(interval_ms: int, transcription: bool = True,  # type: ignore[no-untyped-def]
                   language: str | None = None, english: str | None = "moonshine",
                   noise: str | None = None):
    pipe = FakePipeline(transcript=SENTENCE)
    pipe.words_per_second = 3.0
    session, tr, _, task = await start_session(
        Dialect.GA, pipe, asr=AsrOptions(partial_interval_ms=interval_ms, english=english))
    audio: dict = {"turn_detection": {"type": "server_vad", "silence_duration_ms": 300,
                                      "create_response": False},
                   "noise_reduction": {"type": noise} if noise else None}
    if transcription:
        audio["transcription"] = {"model": "gpt-4o-transcribe"}
        if language:
            audio["transcription"]["language"] = language
    tr.push({"type": "session.update", "session": {"type": "realtime", "audio": {"input": audio}}})
    await tr.wait_for("session.updated")
    return session, tr, pipe, task


async def test_deltas_arrive_while_talking_and_add_up_to_the_transcript() -> None:
    session, tr, pipe, task = await _session(250)
    await _talk(tr, 4.0)
    deltas_while_talking = [e for e in tr.sent if e["type"] == DELTA]
    assert len(deltas_while_talking) >= 3, tr.types()
    tr.push(append_event(silence_pcm16(1.0)))
    done = await tr.wait_for("conversation.item.input_audio_transcription.completed")
    kinds = tr.types()
    assert kinds.index(DELTA) < kinds.index("input_audio_buffer.committed")
    deltas = [e for e in tr.sent if e["type"] == DELTA]
    assert all(d["item_id"] == done["item_id"] for d in deltas)
    assert "".join(d["delta"] for d in deltas) == done["transcript"]
    assert session.transcriber.partial_decodes >= 10
    await stop_session(tr, task, Dialect.GA)


@pytest.mark.parametrize(("interval", "transcription", "language", "english", "noise"), [
    (250, False, None, "moonshine", None),  # nobody asked for transcripts
    (0, True, None, "moonshine", None),  # partials off
    (250, True, "es", "moonshine", None),  # a Spanish turn goes to Whisper, too slow to re-decode
    (250, True, None, None, None),  # no fast engine at all
    (250, True, None, "moonshine", "near_field"),  # noise suppressed: Whisper, no partials
], ids=["no-transcription", "off", "spanish", "whisper-only", "suppressing-noise"])
async def test_no_partials_unless_asked_for_and_on_the_fast_engine(
        interval: int, transcription: bool, language: str | None, english: str | None,
        noise: str | None) -> None:
    session, tr, pipe, task = await _session(interval, transcription, language, english, noise)
    await _talk(tr, 2.0)
    tr.push(append_event(silence_pcm16(1.0)))
    await tr.wait_for("input_audio_buffer.committed")
    await asyncio.sleep(0.1)
    assert session.transcriber.partial_decodes == 0
    # the final's one delta, as before (after the commit: the decode waits for the pause)
    if transcription:
        await tr.wait_for("conversation.item.input_audio_transcription.completed")
    assert len([e for e in tr.sent if e["type"] == DELTA]) == (1 if transcription else 0)
    assert pipe.asr_noisy and set(pipe.asr_noisy) == {noise is not None}  # the turn's decode
    await stop_session(tr, task, Dialect.GA)


async def test_a_busy_asr_skips_partials_instead_of_queueing_them() -> None:
    session, tr, pipe, task = await _session(100)
    pipe.asr_delay = 0.5
    await _talk(tr, 2.0)
    # 2 s at one decode per 0.1 s would be 20; with each taking 0.5 s at most ~5 run
    assert 1 <= session.transcriber.partial_decodes <= 6
    tr.push(append_event(silence_pcm16(1.0)))
    await tr.wait_for("conversation.item.input_audio_transcription.completed")
    await stop_session(tr, task, Dialect.GA)


async def test_clearing_the_buffer_drops_the_partial_decode() -> None:
    session, tr, pipe, task = await _session(250)
    pipe.asr_delay = 0.3
    await _talk(tr, 1.5)
    tr.push({"type": "input_audio_buffer.clear"})
    await tr.wait_for("input_audio_buffer.cleared")
    before = len([e for e in tr.sent if e["type"] == DELTA])
    await asyncio.sleep(0.6)  # longer than a decode: a stale one would have sent by now
    assert len([e for e in tr.sent if e["type"] == DELTA]) == before
    await stop_session(tr, task, Dialect.GA)


async def test_a_busy_asr_refusing_partials_still_gives_the_final_transcript() -> None:
    session, tr, pipe, task = await _session(100)
    pipe.asr_busy = True  # every partial refused, as the ASR replica does while it decodes
    await _talk(tr, 2.0)
    assert pipe.partial_requests >= 1 and not [e for e in tr.sent if e["type"] == DELTA]
    tr.push(append_event(silence_pcm16(1.0)))
    done = await tr.wait_for("conversation.item.input_audio_transcription.completed")
    assert done["transcript"] and [e["delta"] for e in tr.sent if e["type"] == DELTA] == [
        done["transcript"]]  # the final's one delta
    await stop_session(tr, task, Dialect.GA)


async def test_the_pause_decode_cancels_the_partial_one_and_keeps_what_it_sent() -> None:
    session, tr, pipe, task = await _session(100)
    await _talk(tr, 1.5)
    await tr.wait_for(DELTA)
    pipe.asr_delay = 1.0  # the next partial decode is still in flight when the pause comes
    await _talk(tr, 0.5)
    assert session.transcriber.partial_decodes >= 2
    sent_before = len([e for e in tr.sent if e["type"] == DELTA])
    tr.push(append_event(silence_pcm16(1.0)))
    done = await tr.wait_for("conversation.item.input_audio_transcription.completed")
    assert pipe.asr_cancelled >= 1  # the partial gave way to the turn's own decode
    deltas = [e["delta"] for e in tr.sent if e["type"] == DELTA]
    assert sent_before >= 1 and "".join(deltas) == done["transcript"]
    await stop_session(tr, task, Dialect.GA)
