"""Client events and the server events that answer them, for the rows of docs/protocol.md that no
other test walked through: item retrieve and delete, output_audio_buffer.clear, input
transcription deltas and failures, and the Voice Live events this server does not serve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.unit.fakes import (
    FakePipeline, append_event, silence_pcm16, start_session, stop_session, tone_pcm16,
)
from voxserve.models.base import Transcript
from voxserve.protocol.client_events import ParsedError, parse_client_event
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.unit


async def test_an_item_is_retrieved_then_deleted_then_gone() -> None:
    session, tr, _, task = await start_session(Dialect.BETA)
    tr.push({"type": "conversation.item.create", "item": {
        "id": "note", "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "remember this"}]}})
    await tr.wait_for("conversation.item.created")
    tr.push({"type": "conversation.item.retrieve", "item_id": "note"})
    retrieved = await tr.wait_for("conversation.item.retrieved")
    assert retrieved["item"]["content"][0]["text"] == "remember this"
    tr.push({"type": "conversation.item.delete", "item_id": "note"})
    deleted = await tr.wait_for("conversation.item.deleted")
    assert deleted["item_id"] == "note" and [i.id for i in session.conversation] == []
    tr.push({"type": "conversation.item.retrieve", "item_id": "note"})
    err = await tr.wait_for("error")
    assert err["error"]["code"] == "item_not_found"
    await stop_session(tr, task, Dialect.BETA)


async def test_output_audio_buffer_clear_cancels_the_answer_and_names_it() -> None:
    pipe = FakePipeline(tokens=[f"word{i}. " for i in range(200)], token_delay=0.02)
    session, tr, _, task = await start_session(Dialect.GA, pipe)
    tr.push({"type": "response.create"})
    created = await tr.wait_for("response.created")
    await tr.wait_for("response.output_audio.delta")
    tr.push({"type": "output_audio_buffer.clear"})
    cleared = await tr.wait_for("output_audio_buffer.cleared")
    done = await tr.wait_for("response.done")
    assert cleared["response_id"] == created["response"]["id"] == done["response"]["id"]
    assert done["response"]["status"] == "cancelled"
    await stop_session(tr, task, Dialect.GA)


class _FailingAsr(FakePipeline):
    """Transcribes the first turn, fails every later one."""

    async def transcribe(self, audio_16k: np.ndarray, *args: object, **kwargs: object) -> Transcript:
        if self.transcribed:
            self.transcribed.append(audio_16k.size / 16000)
            raise RuntimeError("decoder crashed")
        return await super().transcribe(audio_16k)


async def test_input_transcription_sends_a_delta_and_the_result_or_the_failure() -> None:
    pipe = _FailingAsr()
    session, tr, _, task = await start_session(Dialect.VOICE_LIVE, pipe)
    tr.push({"type": "session.update", "session": {
        "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "server_vad", "create_response": False}}})
    await tr.wait_for("session.updated")
    tr.push(append_event(tone_pcm16(0.6) + silence_pcm16(0.8)))
    delta = await tr.wait_for("conversation.item.input_audio_transcription.delta")
    completed = await tr.wait_for("conversation.item.input_audio_transcription.completed")
    assert delta["delta"] == completed["transcript"] == "hi there"
    tr.push(append_event(tone_pcm16(0.6) + silence_pcm16(0.8)))
    failed = await tr.wait_for("conversation.item.input_audio_transcription.failed")
    assert failed["error"]["code"] == "asr_failed" and failed["item_id"] != completed["item_id"]
    assert "error" not in tr.types()  # reported on the item, not as a session error
    await stop_session(tr, task, Dialect.VOICE_LIVE)


@pytest.mark.parametrize("message", [
    {"type": "input_text.delta", "delta": "Hel"},
    {"type": "input_text.done", "text": "Hello"},
    {"type": "session.avatar.connect", "client_sdp": "v=0"},
])
def test_voice_live_events_not_served_here_are_unknown_event_types(message: dict[str, str]) -> None:
    with pytest.raises(ParsedError) as caught:
        parse_client_event(json.dumps(message))
    assert caught.value.code == "unknown_event_type" and caught.value.param == "type"
