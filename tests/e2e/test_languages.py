"""Transcription languages end to end through the Voice Live SDK: recorded Mexican Spanish.

Turn detection is off and each clip is committed by hand, so only the ASR runs (no LLM or TTS
turn) and nothing depends on pacing. The es-MX clips are Asterisk prompts (tests/data/es,
CC-BY-SA-3.0). Whisper base on them, measured: WER 0.17 (invalid) and 0.19 (followme-status)
with `es`; the bound below leaves margin for a different CPU's int8 kernels.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conformance import check_event
from tests.e2e.conftest import Server
from tests.speech import clip, spanish_clips, wer
from voxserve.client import pcm16_frames, read_wav
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.e2e

SPANISH_WER_BOUND = 0.4
ENGLISH_WER_BOUND = 0.25
TIMEOUT_S = 240  # an ASR decode on a busy 2-core box, with the first one paying warm-up


def _spanish(stem: str) -> tuple[Any, str]:
    return next((wav, text) for wav, text in spanish_clips() if wav.stem == stem)


class _Session:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []

    async def next(self, *kinds: str) -> dict[str, Any]:
        """The next event of one of `kinds`; every event on the way is kept and checked."""
        while True:
            event = dict((await asyncio.wait_for(self.conn.recv(), TIMEOUT_S)).as_dict())
            check_event(event, Dialect.VOICE_LIVE)
            self.events.append(event)
            if event["type"] in kinds:
                return event

    async def update(self, transcription: dict[str, Any]) -> dict[str, Any]:
        await self.conn.session.update(session={"input_audio_transcription": transcription,
                                                "turn_detection": None})
        return await self.next("session.updated", "error")

    async def transcribe(self, wav: Any) -> dict[str, Any]:
        """Send a clip, commit it, and return its transcription's completed (or failed) event."""
        for frame in pcm16_frames(read_wav(wav), 0.3):
            await self.conn.input_audio_buffer.append(audio=frame)
        await self.conn.input_audio_buffer.commit()
        return await self.next("conversation.item.input_audio_transcription.completed",
                               "conversation.item.input_audio_transcription.failed")


def _connect(server: Server) -> Any:
    from azure.ai.voicelive.aio import connect
    from azure.core.credentials import AzureKeyCredential

    return connect(endpoint=server.http, credential=AzureKeyCredential(server.api_key),
                   model="gpt-4o")


async def test_voice_live_es_mx_transcribes_spanish(server: Server) -> None:
    from azure.ai.voicelive.models import AudioInputTranscriptionOptions

    wav, reference = _spanish("followme-status")
    async with _connect(server) as conn:
        s = _Session(conn)
        await s.next("session.created")
        # an unknown language is refused at the update, naming the field; the session goes on
        refused = await s.update({"model": "azure-speech", "language": "xx-YY"})
        assert refused["type"] == "error", refused
        assert refused["error"]["param"] == "session.input_audio_transcription.language"
        # only that field was dropped: the rest of the update (turn detection off) applied
        rest = await s.next("session.updated")
        assert rest["session"]["turn_detection"] is None
        options = AudioInputTranscriptionOptions(model="azure-speech", language="es-MX")
        updated = await s.update(options.as_dict())
        assert updated["type"] == "session.updated", updated
        assert updated["session"]["input_audio_transcription"]["language"] == "es-MX"
        heard = await s.transcribe(wav)
    assert heard["type"] == "conversation.item.input_audio_transcription.completed", heard
    assert wer(reference, heard["transcript"]) <= SPANISH_WER_BOUND, heard["transcript"]
    kinds = [e["type"] for e in s.events]
    assert "conversation.item.input_audio_transcription.failed" not in kinds
    assert "response.created" not in kinds  # turn detection off: a commit is only a transcription


async def test_voice_live_language_list_detects_spanish_then_english(server: Server) -> None:
    from azure.ai.voicelive.models import AudioInputTranscriptionOptions

    spanish, spanish_text = _spanish("invalid")
    english, english_text = clip("0880")
    async with _connect(server) as conn:
        s = _Session(conn)
        await s.next("session.created")
        options = AudioInputTranscriptionOptions(model="azure-speech", language="en-US,es-MX",
                                                 phrase_list=["extension"])
        updated = await s.update(options.as_dict())
        assert updated["type"] == "session.updated", updated
        heard_es = await s.transcribe(spanish)
        heard_en = await s.transcribe(english)
    for heard in (heard_es, heard_en):
        assert heard["type"] == "conversation.item.input_audio_transcription.completed", heard
    assert wer(spanish_text, heard_es["transcript"]) <= SPANISH_WER_BOUND, heard_es["transcript"]
    assert wer(english_text, heard_en["transcript"]) <= ENGLISH_WER_BOUND, heard_en["transcript"]
    assert "conversation.item.input_audio_transcription.failed" not in [e["type"] for e in s.events]
