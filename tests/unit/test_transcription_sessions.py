"""Transcription-only sessions in their three forms: GA `session.type: "transcription"`, a
connection with `?intent=transcription`, beta `transcription_session.update`. VAD and ASR run,
transcripts arrive, and no response is ever created."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.fakes import (
    FakeTransport, append_event, silence_pcm16, start_session, stop_session, tone_pcm16,
)
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.unit


async def _speak_and_check(tr: FakeTransport, task: Any, dialect: Dialect) -> None:
    """One spoken turn: committed and transcribed, never answered; response.create refused."""
    tr.push(append_event(silence_pcm16(0.5) + tone_pcm16(1.0) + silence_pcm16(0.8)))
    done = await tr.wait_for("conversation.item.input_audio_transcription.completed")
    assert done["transcript"] == "hi there"
    tr.push({"type": "response.create", "event_id": "r1"})
    err = await tr.wait_for("error")
    assert err["error"]["event_id"] == "r1" and "transcription session" in err["error"]["message"]
    assert not any(t.startswith("response.") for t in tr.types())
    await stop_session(tr, task, dialect)


async def test_ga_transcription_type_transcribes_and_never_answers() -> None:
    session, tr, pipe, task = await start_session(Dialect.GA)
    tr.push({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}})
    updated = await tr.wait_for("session.updated")
    assert updated["session"]["type"] == "transcription"
    await _speak_and_check(tr, task, Dialect.GA)
    assert pipe.requests == []


async def test_intent_transcription_starts_a_transcription_session() -> None:
    session, tr, pipe, task = await start_session(Dialect.GA, transcription_only=True)
    created = tr.sent[0]
    assert created["type"] == "session.created" and created["session"]["type"] == "transcription"
    await _speak_and_check(tr, task, Dialect.GA)
    assert pipe.requests == []


async def test_beta_transcription_session_update() -> None:
    session, tr, pipe, task = await start_session(Dialect.BETA)
    tr.push({"type": "transcription_session.update", "session": {
        "input_audio_format": "pcm16", "input_audio_noise_reduction": None,
        "input_audio_transcription": {"model": "whisper-1", "language": "en"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
        "include": None}})
    updated = await tr.wait_for("transcription_session.updated")
    assert updated["session"]["input_audio_transcription"]["model"] == "whisper-1"
    await _speak_and_check(tr, task, Dialect.BETA)
    assert pipe.requests == []


async def test_transcription_session_update_is_beta_only() -> None:
    session, tr, _, task = await start_session(Dialect.GA)
    tr.push({"type": "transcription_session.update", "session": {}})
    err = await tr.wait_for("error")
    assert err["error"]["code"] == "unknown_event_type"
    await stop_session(tr, task)
