"""response.create and conversation fields that used to be accepted and ignored, now honoured:
out-of-band output without item events, Voice Live's pre-generated message, `commit: false`,
`append_input_items`, a per-response output format, `previous_item_id: "root"`."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.unit.fakes import FakeTransport, start_session, stop_session
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.unit

ITEM_EVENTS = {"conversation.item.added", "conversation.item.done", "conversation.item.created"}


async def _respond(dialect: Dialect, response: dict[str, Any], **event: Any
                   ) -> tuple[Any, FakeTransport, Any, dict[str, Any]]:
    session, tr, pipe, task = await start_session(dialect)
    tr.push({"type": "session.update", "session": {"turn_detection": None} if dialect
             is not Dialect.GA else {"type": "realtime", "audio": {"input": {"turn_detection": None}}}})
    await tr.wait_for("session.updated")
    tr.push({"type": "response.create", "response": response, **event})
    done = await tr.wait_for("response.done")
    await stop_session(tr, task, dialect)
    return session, tr, pipe, done


async def test_out_of_band_responses_emit_no_item_events() -> None:
    session, tr, pipe, done = await _respond(Dialect.GA, {"conversation": "none",
                                                          "metadata": {"topic": "x"}})
    assert done["response"]["status"] == "completed" and done["response"]["output"]
    assert not ITEM_EVENTS & set(tr.types())
    assert session.conversation.last_id is None  # nothing entered the conversation


async def test_voice_live_pre_generated_message_is_spoken_verbatim_without_the_llm() -> None:
    text = "This call may be recorded for quality purposes."
    _, tr, pipe, done = await _respond(Dialect.VOICE_LIVE, {"pre_generated_assistant_message": {
        "content": [{"type": "text", "text": text}]}})
    assert pipe.requests == []  # no LLM call
    assert " ".join(pipe.spoken) == text
    transcript = next(e for e in tr.sent if e["type"] == "response.audio_transcript.done")
    assert transcript["transcript"] == text
    assert done["response"]["status"] == "completed"


async def test_voice_live_commit_false_keeps_the_answer_out_of_the_conversation() -> None:
    session, tr, _, done = await _respond(Dialect.VOICE_LIVE, {"commit": False})
    assert done["response"]["output"] and session.conversation.last_id is None
    assert not ITEM_EVENTS & set(tr.types())


async def test_voice_live_append_input_items_join_the_conversation_first() -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text",
                                                            "text": "What time is it?"}]}
    session, tr, pipe, _ = await _respond(Dialect.VOICE_LIVE, {"append_input_items": [item]})
    assert tr.types().index("conversation.item.created") < tr.types().index("response.created")
    assert "What time is it?" in str(pipe.requests[0].messages)


async def test_a_per_response_output_format_is_used() -> None:
    _, tr, _, done = await _respond(Dialect.BETA, {"output_audio_format": "g711_ulaw"})
    audio = b"".join(base64.b64decode(e["delta"]) for e in tr.sent
                     if e["type"] == "response.audio.delta")
    # one byte per 8 kHz sample instead of two per 24 kHz sample
    seconds = sum(0.25 * len(t.split()) for t in ("Hello there, nice to meet you.",))
    assert abs(len(audio) - seconds * 8000) < 0.05 * seconds * 8000
    assert done["response"]["output_audio_format"] == "g711_ulaw"


async def test_voice_live_unknown_response_fields_get_warnings() -> None:
    _, tr, _, done = await _respond(Dialect.VOICE_LIVE, {"reasoning_effort": "low", "bogus": 1})
    warned = {e["warning"]["param"] for e in tr.sent if e["type"] == "warning"}
    assert warned == {"response.reasoning_effort", "response.bogus"}
    assert done["response"]["status"] == "completed"


async def test_previous_item_id_root_inserts_at_the_start() -> None:
    session, tr, _, task = await start_session(Dialect.BETA)
    for n, previous in (("first", None), ("zeroth", "root")):
        tr.push({"type": "conversation.item.create", "previous_item_id": previous, "item": {
            "id": n, "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": n}]}})
        await tr.wait_for("conversation.item.created", count=1 if previous is None else 2)
    assert "error" not in tr.types()
    assert [i.id for i in session.conversation] == ["zeroth", "first"]
    await stop_session(tr, task)
