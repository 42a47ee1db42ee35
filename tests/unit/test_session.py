"""The session state machine driven with fakes: VAD turns, responses, barge-in, errors."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from tests.unit.fakes import FakePipeline, append_event, silence_pcm16, stop_session, tone_pcm16
from tests.unit.fakes import start_session as _start_session
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.unit


async def _stop(transport, task, dialect=None) -> None:  # type: ignore[no-untyped-def]
    """End the session and check every event it sent against the official SDK models."""
    await stop_session(transport, task, dialect or _DIALECTS[id(task)])


_DIALECTS: dict[int, Dialect] = {}


async def start_session(dialect, pipeline=None, **kwargs):  # type: ignore[no-untyped-def]
    session, tr, pipe, task = await _start_session(dialect, pipeline, **kwargs)
    _DIALECTS[id(task)] = dialect
    return session, tr, pipe, task


async def test_server_vad_turn_produces_the_p0_sequence_in_order() -> None:
    session, tr, pipe, task = await start_session(Dialect.BETA)
    tr.push(append_event(silence_pcm16(0.5) + tone_pcm16(1.0) + silence_pcm16(0.8)))
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    kinds = tr.types()
    order = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
             "input_audio_buffer.committed", "conversation.item.created", "response.created",
             "response.output_item.added", "response.content_part.added",
             "response.audio_transcript.delta", "response.audio.delta", "response.audio.done",
             "response.audio_transcript.done", "response.content_part.done",
             "response.output_item.done", "response.done"]
    positions = [kinds.index(k) for k in order]
    assert positions == sorted(positions), kinds
    started = tr.sent[kinds.index("input_audio_buffer.speech_started")]
    stopped = tr.sent[kinds.index("input_audio_buffer.speech_stopped")]
    # tone starts at 500 ms; prefix padding 300 ms; the VAD needs ~100 ms to confirm
    assert 150 <= started["audio_start_ms"] <= 260
    assert 1450 <= stopped["audio_end_ms"] <= 1600
    assert started["item_id"] == stopped["item_id"]
    transcript = tr.sent[kinds.index("response.audio_transcript.done")]["transcript"]
    assert transcript == "Hello there, nice to meet you."
    usage = done["response"]["usage"]
    assert usage["input_tokens"] == 20 and usage["input_token_details"]["cached_tokens"] == 10
    # the LLM saw the user's words
    assert pipe.requests[0].messages[-1] == {"role": "user", "content": "hi there"}
    await _stop(tr, task)


async def test_ga_dialect_renames_events_and_splits_item_created() -> None:
    session, tr, pipe, task = await start_session(Dialect.GA)
    tr.push(append_event(tone_pcm16(0.6) + silence_pcm16(0.8)))
    await tr.wait_for("response.done")
    kinds = set(tr.types())
    assert {"response.output_audio.delta", "response.output_audio_transcript.done",
            "conversation.item.added", "conversation.item.done"} <= kinds
    assert not kinds & {"response.audio.delta", "conversation.item.created"}
    item_done = [e for e in tr.sent if e["type"] == "response.output_item.done"][0]
    assert item_done["item"]["content"][0]["type"] == "output_audio"
    await _stop(tr, task)


async def test_barge_in_cancels_response_and_stops_audio() -> None:
    pipe = FakePipeline(tokens=[f"word{i}. " for i in range(200)], token_delay=0.02)
    session, tr, _, task = await start_session(Dialect.VOICE_LIVE, pipe)
    tr.push(append_event(tone_pcm16(0.6) + silence_pcm16(0.8)))
    await tr.wait_for("response.audio.delta")
    # a short burst (under interrupt_min_ms) whose transcript has words: a real interruption
    tr.push(append_event(tone_pcm16(0.4) + silence_pcm16(0.8)))
    started = await tr.wait_for("input_audio_buffer.speech_started", 2)
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert done["response"]["output"][0]["status"] == "incomplete"
    kinds = tr.types()
    i_done = kinds.index("response.done")
    assert kinds.index("input_audio_buffer.speech_started", kinds.index("response.created")) < i_done
    # no audio of the cancelled response after its done
    rid = done["response"]["id"]
    assert not [e for e in tr.sent[i_done:] if e.get("response_id") == rid]
    assert pipe.chat_cancelled == 1
    assert started["audio_start_ms"] > 1000
    await _stop(tr, task)


async def test_response_cancel_without_active_response_is_an_error_and_session_survives() -> None:
    session, tr, pipe, task = await start_session(Dialect.GA)
    tr.push({"type": "response.cancel", "event_id": "c1"})
    err = await tr.wait_for("error")
    assert err["error"]["code"] == "response_cancel_not_active"
    assert err["error"]["event_id"] == "c1"
    tr.push({"type": "session.update", "session": {"type": "realtime", "instructions": "x"}})
    await tr.wait_for("session.updated")
    await _stop(tr, task)


@pytest.mark.parametrize("message,code", [
    ("not json", "invalid_json"),
    ("[1,2]", "invalid_json"),
    ('{"type": "no.such.event"}', "unknown_event_type"),
    ('{"event_id": "x"}', "missing_required_parameter"),
    ('{"type": "conversation.item.delete"}', "missing_required_parameter"),
    ('{"type": "conversation.item.truncate", "item_id": "a", "content_index": "zero", "audio_end_ms": 1}', "invalid_type"),
    ('{"type": "input_audio_buffer.append", "audio": "%%%notbase64"}', "invalid_value"),
    ('{"type": "input_audio_buffer.commit"}', "input_audio_buffer_commit_empty"),
    ('{"type": "conversation.item.retrieve", "item_id": "nope"}', "item_not_found"),
    ('{"type": "session.update", "session": {"type": "realtime", "bogus": 1}}', "unknown_parameter"),
    ('{"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"voice": 7}}}}', "invalid_type"),
    ('{"type": "conversation.item.create", "item": {"type": "message", "content": []}}', "missing_required_parameter"),
])
async def test_bad_client_messages_get_error_events(message: str, code: str) -> None:
    session, tr, pipe, task = await start_session(Dialect.GA)
    tr.push(message)
    err = await tr.wait_for("error")
    assert err["error"]["code"] == code, err
    assert err["error"]["type"] == "invalid_request_error"
    tr.push({"type": "input_audio_buffer.clear"})
    await tr.wait_for("input_audio_buffer.cleared")
    await _stop(tr, task)


async def test_client_events_without_event_id_type_last_and_nulls() -> None:
    session, tr, pipe, task = await start_session(Dialect.VOICE_LIVE)
    tr.push('{"session": {"turn_detection": null, "instructions": "hi"}, "type": "session.update"}')
    updated = await tr.wait_for("session.updated")
    assert updated["session"]["turn_detection"] is None
    assert session.config.turn_detection is None
    # manual turn: audio, commit, response.create
    tr.push(append_event(tone_pcm16(0.5)))
    tr.push({"type": "input_audio_buffer.commit"})
    await tr.wait_for("input_audio_buffer.committed")
    assert "response.created" not in tr.types()
    tr.push({"type": "response.create"})
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    await _stop(tr, task)


async def test_function_call_round_trip_does_not_auto_respond() -> None:
    pipe = FakePipeline(tool_call=("get_weather", '{"city":"Oslo"}'))
    session, tr, _, task = await start_session(Dialect.GA, pipe)
    tr.push({"type": "session.update", "session": {"type": "realtime", "tools": [
        {"type": "function", "name": "get_weather", "description": "weather",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}})
    await tr.wait_for("session.updated")
    tr.push({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"}]}})
    tr.push({"type": "response.create"})
    done = await tr.wait_for("response.done")
    call = done["response"]["output"][0]
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    args_done = await tr.wait_for("response.function_call_arguments.done")
    assert args_done["arguments"] == '{"city":"Oslo"}' and args_done["call_id"] == call["call_id"]
    pipe.tool_call = None
    tr.push({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call["call_id"], "output": '{"temp": 21}'}})
    await tr.wait_for("conversation.item.added", 3)
    await asyncio.sleep(0.05)
    assert tr.types().count("response.created") == 1  # no auto-response to a tool output
    tr.push({"type": "response.create"})
    await tr.wait_for("response.done", 2)
    msgs = pipe.requests[-1].messages
    assert msgs[-1] == {"role": "tool", "tool_call_id": call["call_id"], "content": '{"temp": 21}'}
    assert msgs[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    await _stop(tr, task)


async def test_truncate_cuts_the_transcript_the_llm_sees() -> None:
    pipe = FakePipeline(tokens=["One two three four five six seven eight."])
    session, tr, _, task = await start_session(Dialect.BETA, pipe)
    tr.push({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "count"}]}})
    tr.push({"type": "response.create"})
    done = await tr.wait_for("response.done")
    item_id = done["response"]["output"][0]["id"]
    tr.push({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
             "audio_end_ms": 60000})
    err = await tr.wait_for("error")
    assert err["error"]["code"] == "item_truncate_invalid_audio_end_ms"
    tr.push({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
             "audio_end_ms": 600})
    await tr.wait_for("conversation.item.truncated")
    tr.push({"type": "response.create"})
    await tr.wait_for("response.done", 2)
    assistant = [m for m in pipe.requests[-1].messages if m["role"] == "assistant"]
    assert assistant[-1]["content"] == "One two three"  # words starting before 600 ms
    await _stop(tr, task)


async def test_second_response_create_while_active_is_refused_except_voice_live() -> None:
    pipe = FakePipeline(tokens=[f"w{i}. " for i in range(100)], token_delay=0.02)
    session, tr, _, task = await start_session(Dialect.GA, pipe)
    tr.push({"type": "response.create"})
    await tr.wait_for("response.created")
    tr.push({"type": "response.create", "event_id": "dup"})
    err = await tr.wait_for("error")
    assert err["error"]["code"] == "conversation_already_has_active_response"
    tr.push({"type": "response.cancel"})
    done = await tr.wait_for("response.done")
    assert done["response"]["status_details"]["reason"] == "client_cancelled"
    await _stop(tr, task)


async def test_failed_llm_ends_the_response_failed_and_session_goes_on() -> None:
    pipe = FakePipeline()
    pipe.fail_chat = True
    session, tr, _, task = await start_session(Dialect.GA, pipe)
    tr.push({"type": "response.create"})
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "failed"
    assert "llm exploded" in done["response"]["status_details"]["error"]["message"]
    pipe.fail_chat = False
    tr.push({"type": "response.create"})
    done = await tr.wait_for("response.done", 2)
    assert done["response"]["status"] == "completed"
    await _stop(tr, task)


async def test_g711_input_and_16k_output_formats() -> None:
    # one sentence in one token: one TTS piece, so no pause between pieces adds to the audio
    session, tr, pipe, task = await start_session(
        Dialect.VOICE_LIVE, FakePipeline(tokens=("Hello there, nice to meet you. ",)))
    tr.push({"type": "session.update", "session": {"input_audio_format": "g711_ulaw",
                                                   "output_audio_format": "pcm16_16000hz"}})
    await tr.wait_for("session.updated")
    from voxserve.audio import g711
    pcm = np.frombuffer(tone_pcm16(0.6, rate=8000) + silence_pcm16(0.8, rate=8000), "<i2")
    tr.push({"type": "input_audio_buffer.append", "audio": base64.b64encode(g711.ulaw_encode(pcm)).decode()})
    await tr.wait_for("response.done")
    deltas = [e for e in tr.sent if e["type"] == "response.audio.delta"]
    total = sum(len(base64.b64decode(d["delta"])) for d in deltas)
    # fake TTS: 0.25 s per word, 6 words = 1.5 s at 16 kHz PCM16
    assert total == pytest.approx(1.5 * 16000 * 2, rel=0.01)
    await _stop(tr, task)


async def test_early_asr_decode_is_reused_when_the_turn_ends() -> None:
    pipe = FakePipeline()
    pipe.asr_delay = 0.05
    session, tr, _, task = await start_session(Dialect.GA, pipe)
    tr.push(append_event(tone_pcm16(1.0) + silence_pcm16(0.8)))
    await tr.wait_for("response.done")
    assert len(pipe.transcribed) == 1  # the decode started at the pause served the turn
    assert pipe.asr_cancelled == 0
    await _stop(tr, task)


async def test_early_asr_decode_is_dropped_when_the_user_resumes() -> None:
    pipe = FakePipeline()
    pipe.asr_delay = 0.5
    session, tr, _, task = await start_session(Dialect.GA, pipe)
    # a 300 ms pause: past the 200 ms speculation point, short of the 500 ms end of turn
    tr.push(append_event(tone_pcm16(0.6) + silence_pcm16(0.3)))
    await asyncio.sleep(0.05)
    tr.push(append_event(tone_pcm16(0.6) + silence_pcm16(0.8)))
    await tr.wait_for("response.done")
    assert pipe.asr_cancelled == 1
    assert len(pipe.transcribed) == 2  # dropped at the resume; the second pause's decode serves
    assert tr.types().count("input_audio_buffer.speech_started") == 1
    await _stop(tr, task)


class _RecordingObserver:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return lambda *args: self.calls.append((name, args))


async def test_timing_extension_is_opt_in_and_consistent_with_metrics() -> None:
    observer = _RecordingObserver()
    pipe = FakePipeline(token_delay=0.01)
    session, tr, _, task = await start_session(Dialect.GA, pipe, observer=observer)
    tr.push(append_event(tone_pcm16(0.6) + silence_pcm16(0.8)))
    await tr.wait_for("response.done")
    assert "voxserve.response.timing" not in tr.types()  # never unless asked
    tr.push({"type": "session.update", "session": {"type": "realtime",
                                                   "voxserve": {"response_timing": True}}})
    await tr.wait_for("session.updated")
    tr.push(append_event(tone_pcm16(0.6) + silence_pcm16(0.8)))
    timing = await tr.wait_for("voxserve.response.timing")
    kinds = tr.types()
    assert kinds.index("voxserve.response.timing") == kinds.index("response.done", kinds.index("session.updated")) + 1
    assert timing["status"] == "completed"
    assert timing["ttfa_ms"] > 0 and timing["end_of_turn_ms"] > 0 and timing["asr_ms"] >= 0
    assert timing["total_ms"] >= timing["ttfa_ms"]
    ttfas = [args[1] for name, args in observer.calls if name == "stage" and args[0] == "ttfa"]
    assert len(ttfas) == 2 and ttfas[-1] == timing["ttfa_ms"]
    assert [n for n, _ in observer.calls].count("turn_done") == 2
    assert ("session_opened", ("ga",)) in observer.calls
    tr.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)
    assert ("session_closed", ("ga",)) in observer.calls


_ODD_VALUES = [None, 0, -1, 1.5, "", "x", [], [1], {}, {"a": 1}, True]
_FIELDS = {
    "session.update": ["session"], "input_audio_buffer.append": ["audio"],
    "conversation.item.create": ["item", "previous_item_id"],
    "conversation.item.delete": ["item_id"], "conversation.item.retrieve": ["item_id"],
    "conversation.item.truncate": ["item_id", "content_index", "audio_end_ms"],
    "response.create": ["response"], "response.cancel": ["response_id"],
}


@pytest.mark.parametrize("dialect", list(Dialect))
async def test_odd_values_in_every_field_never_break_the_session(dialect: Dialect) -> None:
    """Each field of each client event set to values of every JSON type: each message gets
    exactly one reply or none at all, errors are well-formed, and the session keeps serving."""
    session, tr, pipe, task = await start_session(dialect)
    sent = 0
    for kind, fields in _FIELDS.items():
        for name in fields:
            for value in _ODD_VALUES:
                tr.push({"type": kind, "event_id": f"ev{sent}", name: value})
                sent += 1
    nested = [{"type": "session.update", "session": {"turn_detection": v}} for v in _ODD_VALUES]
    nested += [{"type": "session.update", "session": {"tools": [v]}} for v in _ODD_VALUES]
    nested += [{"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                             "content": [v]}} for v in _ODD_VALUES]
    for message in nested:
        tr.push(message)
    tr.push({"type": "response.cancel", "event_id": "last"})  # a response may be active: cancel
    tr.push({"type": "session.update", "event_id": "alive",
             "session": {"instructions": "still here"} if dialect is not Dialect.GA
             else {"type": "realtime", "instructions": "still here"}})
    await tr.wait_for("session.updated", count=1 + sum(1 for e in tr.sent if e["type"] == "session.updated"))
    deadline = asyncio.get_running_loop().time() + 10
    while not any(e.get("session", {}).get("instructions") == "still here" for e in tr.sent
                  if e["type"] == "session.updated"):
        assert asyncio.get_running_loop().time() < deadline, "session stopped answering"
        await asyncio.sleep(0.01)
    assert not task.done()
    for e in tr.sent:
        if e["type"] == "error":
            assert e["error"]["message"] and e["error"]["type"] == "invalid_request_error", e
    if session.responder.active is not None:
        tr.push({"type": "response.cancel"})
        await tr.wait_for("response.done")
    await _stop(tr, task)


async def test_voice_live_client_driven_turn_commits_and_responds_without_vad() -> None:
    session, tr, pipe, task = await start_session(Dialect.VOICE_LIVE)
    tr.push({"type": "input_audio.turn.append", "turn_id": "t0", "audio": ""})
    err = await tr.wait_for("error")
    assert err["error"]["param"] == "turn_id"
    tr.push({"type": "input_audio.turn.start", "turn_id": "t1"})
    # a pause long enough to end a VAD turn: the client, not the VAD, decides here
    for chunk in (tone_pcm16(0.5), silence_pcm16(1.0), tone_pcm16(0.5)):
        tr.push({"type": "input_audio.turn.append", "turn_id": "t1",
                 "audio": base64.b64encode(chunk).decode()})
    tr.push({"type": "input_audio.turn.end", "turn_id": "t1"})
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    kinds = tr.types()
    assert "input_audio_buffer.speech_started" not in kinds
    assert kinds.count("input_audio_buffer.committed") == 1
    assert pipe.transcribed == [pytest.approx(2.0, abs=0.05)]  # the whole turn, pause included
    tr.push({"type": "input_audio.turn.start", "turn_id": "t2"})
    tr.push({"type": "input_audio.turn.cancel", "turn_id": "t2"})
    await tr.wait_for("input_audio_buffer.cleared")
    await _stop(tr, task)


async def test_voice_live_events_are_refused_in_openai_dialects() -> None:
    session, tr, pipe, task = await start_session(Dialect.BETA)
    tr.push({"type": "input_audio.clear", "event_id": "x"})
    err = await tr.wait_for("error")
    assert err["error"]["code"] == "unknown_event_type" and err["error"]["event_id"] == "x"
    await _stop(tr, task)


async def test_idle_timeout_triggers_a_turn_after_the_agent_finished() -> None:
    session, tr, pipe, task = await start_session(Dialect.GA)
    tr.push({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "idle_timeout_ms": 2000}}}}})
    await tr.wait_for("session.updated")
    tr.push(append_event(tone_pcm16(0.6) + silence_pcm16(0.8)))
    await tr.wait_for("response.done")
    tr.push(append_event(silence_pcm16(1.5)))  # not yet idle long enough
    tr.push({"type": "input_audio_buffer.clear"})
    await tr.wait_for("input_audio_buffer.cleared")
    assert "input_audio_buffer.timeout_triggered" not in tr.types()
    tr.push(append_event(silence_pcm16(1.0)))
    fired = await tr.wait_for("input_audio_buffer.timeout_triggered")
    assert fired["audio_end_ms"] - fired["audio_start_ms"] >= 2000 - 100  # on the audio clock
    done = await tr.wait_for("response.done", 2)
    assert done["response"]["status"] == "completed"
    assert len(pipe.transcribed) == 1  # the silent turn is not sent to ASR
    kinds = tr.types()
    assert kinds.index("input_audio_buffer.timeout_triggered") < kinds.index(
        "input_audio_buffer.committed", kinds.index("input_audio_buffer.timeout_triggered"))
    await _stop(tr, task)


async def test_auto_truncate_cuts_the_interrupted_answer_to_what_was_played() -> None:
    pipe = FakePipeline(tokens=[f"word{i} " for i in range(40)] + ["end."], token_delay=0.0)
    session, tr, _, task = await start_session(Dialect.VOICE_LIVE, pipe)
    tr.push({"type": "session.update", "session": {"turn_detection": {
        "type": "server_vad", "auto_truncate": True}}})
    await tr.wait_for("session.updated")
    tr.push({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "talk"}]}})
    tr.push({"type": "response.create"})
    pipe.token_delay = 0.05  # keep the answer going while the user barges in
    await tr.wait_for("response.audio.delta")
    tr.push(append_event(tone_pcm16(0.4) + silence_pcm16(0.8)))
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "cancelled"
    truncated = await tr.wait_for("conversation.item.truncated")
    item_id = done["response"]["output"][0]["id"]
    assert truncated["item_id"] == item_id
    spoken = session.conversation.spoken[item_id]
    assert 0 < truncated["audio_end_ms"] < spoken.duration_ms
    transcript = session.conversation.get(item_id).content[0].transcript
    full = done["response"]["output"][0]["content"][0]["transcript"]
    assert transcript and len(transcript) < len(full)
    await _stop(tr, task)
