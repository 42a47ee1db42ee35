"""No message can end a session: every frame a client can send, however malformed or large,
parses to an event or to a `ProtocolError` (an `error` event), never to another exception."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from tests.unit.refusals import refused
from voxserve.protocol import client_events as ce
from voxserve.protocol import session_update
from voxserve.protocol.client_events import ParsedError, parse_client_event
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.items import parse_client_item
from voxserve.protocol.response_overrides import parse_response_overrides
from voxserve.protocol.session_config import SessionConfig, VoiceTable, apply_update
from voxserve.protocol.validation import MAX_DEPTH, MAX_INSTRUCTIONS_CHARS, MAX_KEYS

pytestmark = pytest.mark.unit

VOICES = VoiceTable({"alloy": "heart"})
HUGE = "x" * 200_000


def parse_error(frame: str | bytes) -> ParsedError:
    with pytest.raises(ParsedError) as info:
        parse_client_event(frame)
    return info.value


def nested_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


# --- before and during json.loads --------------------------------------------------------------


@pytest.mark.parametrize("frame", ["[" * 5000 + "]" * 5000, '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
                                   '{"type": "session.update", "session": ' + '{"a": ' * 5000
                                   + "1" + "}" * 5001])
def test_deeply_nested_json_is_refused_before_decoding(frame: str) -> None:
    err = parse_error(frame)
    assert err.code == ErrorCode.INVALID_JSON and "deeper" in err.message


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = "{" * 1000 + '\\"[' * 1000
    event = parse_client_event(json.dumps({"type": "session.update",
                                           "session": {"instructions": text}}))
    assert event.session["instructions"] == text  # type: ignore[union-attr]


def test_nesting_up_to_the_limit_is_accepted() -> None:
    frame = json.dumps({"type": "session.update", "session": {"x": nested_schema(MAX_DEPTH // 2 - 2)}})
    parse_client_event(frame)


def test_invalid_utf8_bytes_are_invalid_json() -> None:
    err = parse_error(b'{"type": "session.update", "session": {"instructions": "\xff\xfe"}}')
    assert err.code == ErrorCode.INVALID_JSON and "UTF-8" in err.message
    event = parse_client_event('{"type": "session.update", "session": {"instructions": "héllo"}}'
                               .encode())
    assert event.session == {"instructions": "héllo"}  # type: ignore[union-attr]


def test_lone_surrogates_are_refused() -> None:
    err = parse_error('{"type": "session.update", "session": {"instructions": "\\ud800"}}')
    assert err.code == ErrorCode.INVALID_JSON
    parse_client_event('{"type": "session.update", "session": {"instructions": "\\ud83d\\ude00"}}')


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" * 5000, "-" + "9" * 5000])
def test_numbers_out_of_range_are_errors(number: str) -> None:
    err = parse_error('{"type": "session.update", "session": {"temperature": ' + number + "}}")
    assert err.code == ErrorCode.INVALID_VALUE and "range" in err.message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_not_json(literal: str) -> None:
    err = parse_error('{"type": "session.update", "session": {"temperature": ' + literal + "}}")
    assert err.code == ErrorCode.INVALID_JSON


def test_oversized_frames_are_refused_unread() -> None:
    err = parse_error(" " * (ce.MAX_FRAME_BYTES + 1))
    assert err.code == ErrorCode.MESSAGE_TOO_LARGE


def test_objects_with_too_many_fields_are_refused_while_decoding() -> None:
    err = parse_error(json.dumps({"type": "session.update",
                                  "session": {f"k{i}": 0 for i in range(MAX_KEYS + 1)}}))
    assert err.code == ErrorCode.INVALID_VALUE and str(MAX_KEYS) in err.message
    parse_client_event(json.dumps({"type": "session.update",
                                   "session": {f"k{i}": 0 for i in range(MAX_KEYS - 2)}}))


def test_long_unknown_keys_are_not_echoed_whole_and_warnings_are_few() -> None:
    raw = {"k" * 10_000 + str(i): 0 for i in range(100)}
    for dialect in (Dialect.GA, Dialect.BETA):
        errors = apply_update(SessionConfig(), raw, dialect, VOICES, False).errors
        assert len(errors) == 8 and "93 more" in errors[-1].message
        assert all(e.code == ErrorCode.UNKNOWN_PARAMETER and len(e.message) < 200 for e in errors)
    warnings = apply_update(SessionConfig(), raw, Dialect.VOICE_LIVE, VOICES, False).warnings
    assert len(warnings) <= 8 and "93 more" in warnings[-1][0]
    assert all(len(message) < 200 for message, _ in warnings)


def test_long_ids_are_refused_and_not_echoed() -> None:
    err = parse_error(json.dumps({"type": "response.cancel", "event_id": "e" * 10_000}))
    assert err.param == "event_id" and err.event_id is None and len(err.message) < 200
    err = parse_error(json.dumps({"type": "conversation.item.delete", "item_id": "i" * 10_000,
                                  "event_id": "e1"}))
    assert err.param == "item_id" and err.event_id == "e1"
    err = parse_error(json.dumps({"type": "t" * 10_000}))
    assert err.code == ErrorCode.UNKNOWN_EVENT_TYPE and len(err.message) < 200


def test_any_failure_inside_the_parser_is_a_protocol_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def validate_python(self, raw: Any) -> None:
            raise RuntimeError("a bug")

    monkeypatch.setattr(ce, "_ADAPTER", Broken())
    err = parse_error('{"type": "response.create", "event_id": "e7"}')
    assert err.code == ErrorCode.SERVER_ERROR and err.type == "server_error" and err.event_id == "e7"

    def explode(*args: Any, **kwargs: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(session_update.GaSessionUpdate, "changes", explode)
    err = refused(apply_update, SessionConfig(), {}, Dialect.GA, VOICES, False)
    assert err.code == ErrorCode.SERVER_ERROR


def test_random_corruptions_of_valid_frames_never_escape() -> None:
    """A cheap fuzz: truncated, spliced and byte-flipped frames are events or ParsedErrors."""
    frames = [
        '{"type": "session.update", "session": {"instructions": "hi", "tools": [{"name": "f", '
        '"parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}]}}',
        '{"type": "conversation.item.create", "item": {"type": "message", "role": "user", '
        '"content": [{"type": "input_text", "text": "hello"}]}, "event_id": "e1"}',
        '{"type": "response.create", "response": {"output_modalities": ["text"], "input": []}}',
        '{"type": "conversation.item.truncate", "item_id": "a", "content_index": 0, "audio_end_ms": 5}',
    ]
    rng = random.Random(7)
    alphabet = '{}[]":,\\ 0123456789eE.-+abnrtuflsx\xff\ud800'
    for _ in range(3000):
        chars = list(rng.choice(frames))
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.4:
                chars[i] = rng.choice(alphabet)
            elif op < 0.7:
                del chars[i:i + rng.randint(1, 8)]
            else:
                chars.insert(i, rng.choice(alphabet) * rng.randint(1, 200))
        frame = "".join(chars)
        for sent in (frame, frame.encode("utf-8", "surrogatepass")):
            try:
                event = parse_client_event(sent)
            except ParsedError:
                continue
            if isinstance(event, ce.SessionUpdateEvent):
                for dialect in Dialect:
                    try:
                        apply_update(SessionConfig(), event.session, dialect, VOICES, False)
                    except ProtocolError:
                        pass
            elif isinstance(event, ce.ResponseCreateEvent):
                try:
                    parse_response_overrides(event.response, Dialect.GA, VOICES)
                except ProtocolError:
                    pass
            elif isinstance(event, ce.ConversationItemCreateEvent):
                try:
                    parse_client_item(event.item)
                except ProtocolError:
                    pass


# --- huge strings, field by field -------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "session"), [
    (Dialect.GA, {"type": "realtime", "instructions": HUGE}),
    (Dialect.BETA, {"instructions": HUGE}),
    (Dialect.VOICE_LIVE, {"instructions": HUGE}),
])
def test_huge_session_instructions_are_refused(dialect: Dialect, session: dict[str, Any]) -> None:
    event = parse_client_event(json.dumps({"type": "session.update", "session": session}))
    err = refused(apply_update, SessionConfig(), event.session, dialect, VOICES, False)  # type: ignore[union-attr]
    assert (err.code, err.param) == (ErrorCode.INVALID_VALUE, "session.instructions")
    ok = {**session, "instructions": "x" * MAX_INSTRUCTIONS_CHARS}
    assert len(apply_update(SessionConfig(), ok, dialect, VOICES, False).config.instructions) == \
        MAX_INSTRUCTIONS_CHARS


@pytest.mark.parametrize("dialect", list(Dialect))
def test_huge_response_instructions_are_refused(dialect: Dialect) -> None:
    event = parse_client_event(json.dumps({"type": "response.create",
                                           "response": {"instructions": HUGE}}))
    with pytest.raises(ProtocolError) as info:
        parse_response_overrides(event.response, dialect, VOICES)  # type: ignore[union-attr]
    assert (info.value.code, info.value.param) == (ErrorCode.INVALID_VALUE, "response.instructions")


def test_huge_additional_instructions_are_refused() -> None:
    event = parse_client_event(json.dumps({"type": "response.create", "additional_instructions": HUGE}))
    assert isinstance(event, ce.ResponseCreateEvent)
    with pytest.raises(ProtocolError) as info:
        parse_response_overrides(event.response, Dialect.VOICE_LIVE, VOICES,
                                 event.additional_instructions)
    assert info.value.param == "additional_instructions"


@pytest.mark.parametrize(("tool", "param"), [
    ({"name": "f", "parameters": {"type": "object", "description": HUGE}}, "session.tools[0].parameters"),
    ({"name": "f", "parameters": nested_schema(20) | {"enum": list(range(5000))}},
     "session.tools[0].parameters"),
    ({"name": "f", "description": HUGE}, "session.tools[0].description"),
    ({"name": "f" * 100}, "session.tools[0].name"),
])
def test_huge_tools_are_refused(tool: dict[str, Any], param: str) -> None:
    event = parse_client_event(json.dumps({"type": "session.update", "session": {"tools": [tool]}}))
    err = refused(apply_update, SessionConfig(), event.session, Dialect.BETA, VOICES, False)  # type: ignore[union-attr]
    assert (err.code, err.param) == (ErrorCode.INVALID_VALUE, param)


@pytest.mark.parametrize(("tool", "param", "says"), [
    ({"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "strin"}}}},
     "session.tools[0].parameters", "properties/a/type"),
    ({"name": "f", "parameters": {"type": "object", "required": "a"}}, "session.tools[0].parameters",
     "required"),
    ({"name": "f", "parameters": {"type": "array"}}, "session.tools[0].parameters", '"type": "object"'),
    ({"name": "message"}, "session.tools[0].name", "reserved"),
])
def test_malformed_tools_are_refused_with_the_reason(tool: dict[str, Any], param: str, says: str) -> None:
    err = refused(apply_update, SessionConfig(), {"tools": [tool]}, Dialect.BETA, VOICES, False)
    assert (err.code, err.param) == (ErrorCode.INVALID_VALUE, param)
    assert says in err.message


def test_a_schema_without_a_type_is_an_object_schema() -> None:
    result = apply_update(SessionConfig(), {"tools": [{"name": "f", "parameters": {
        "properties": {"a": {"type": "integer"}}}}]}, Dialect.BETA, VOICES, False)
    assert not result.errors
    assert result.config.tools[0].parameters["properties"]["a"] == {"type": "integer"}


def test_too_many_tools_are_refused() -> None:
    tools = [{"name": f"f{i}"} for i in range(200)]
    err = refused(apply_update, SessionConfig(), {"tools": tools}, Dialect.BETA, VOICES, False)
    assert err.param == "session.tools"


def test_a_tool_schema_nested_past_the_depth_limit_never_reaches_the_decoder() -> None:
    frame = json.dumps({"type": "session.update",
                        "session": {"tools": [{"name": "f", "parameters": nested_schema(100)}]}})
    assert parse_error(frame).code == ErrorCode.INVALID_JSON


@pytest.mark.parametrize(("item", "param"), [
    ({"type": "message", "role": "user", "content": [{"type": "input_text", "text": HUGE}]},
     "item.content[0].text"),
    ({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x" * 20_000}] * 2},
     "item.content"),
    ({"type": "function_call_output", "call_id": "c", "output": HUGE}, "item.output"),
    ({"type": "function_call", "call_id": "c", "name": "f", "arguments": HUGE}, "item.arguments"),
    ({"type": "function_call_output", "call_id": "c" * 1000, "output": "{}"}, "item.call_id"),
])
def test_huge_item_text_is_refused(item: dict[str, Any], param: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_item(item)
    assert (info.value.code, info.value.param) == (ErrorCode.INVALID_VALUE, param)


def test_huge_input_items_in_response_create_are_refused() -> None:
    raw = {"input": [{"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": HUGE}]}]}
    with pytest.raises(ProtocolError) as info:
        parse_response_overrides(raw, Dialect.GA, VOICES)
    assert info.value.param == "response.input[0].content[0].text"


def test_huge_transcription_prompt_and_voice_names_are_refused() -> None:
    err = refused(apply_update, SessionConfig(), {"input_audio_transcription": {"prompt": HUGE}},
                     Dialect.BETA, VOICES, False)
    assert err.param == "session.input_audio_transcription.prompt"
    err = refused(apply_update, SessionConfig(), {"voice": HUGE}, Dialect.BETA, VOICES, False)
    assert err.param == "session.voice" and len(err.message) < 400
