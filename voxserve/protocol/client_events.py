"""Client events: one pydantic model per event, joined in a discriminated union parsed once.

Client events may lack `event_id`, put `type` last (the Voice Live SDK does) or carry explicit
nulls; unknown extra fields are tolerated, as the reference services tolerate them. No message
can end a session: whatever cannot be parsed (bad UTF-8, JSON nested thousands deep, numbers
out of range, a bug of ours) becomes a `ParsedError` carrying the client's `event_id` when it
had one. The `session` and `response` payloads are parsed later, with the connection's dialect
(`session_update.apply_update`, `response_overrides.parse_response_overrides`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.validation import (
    MAX_DEPTH, MAX_INT_DIGITS, MAX_KEYS, MAX_NAME_CHARS, no_stray_exceptions, validation_error,
)

_Id = Annotated[str, Field(max_length=MAX_NAME_CHARS)]


class _ClientEvent(BaseModel):
    # strict: "0" is not an index and 5.0 is not a millisecond count; say so rather than guess
    model_config = ConfigDict(extra="ignore", strict=True)
    voice_live_only: ClassVar[bool] = False  # other dialects refuse the event as unknown
    event_id: _Id | None = None


class SessionUpdateEvent(_ClientEvent):
    type: Literal["session.update"]
    session: dict[str, Any]


class TranscriptionSessionUpdateEvent(_ClientEvent):  # beta: a transcription-only session
    type: Literal["transcription_session.update"]
    session: dict[str, Any]


class InputAudioBufferAppendEvent(_ClientEvent):
    type: Literal["input_audio_buffer.append"]
    audio: str


class InputAudioBufferCommitEvent(_ClientEvent):
    type: Literal["input_audio_buffer.commit"]


class InputAudioBufferClearEvent(_ClientEvent):
    type: Literal["input_audio_buffer.clear"]


class ConversationItemCreateEvent(_ClientEvent):
    type: Literal["conversation.item.create"]
    item: dict[str, Any]
    previous_item_id: _Id | None = None


class ConversationItemDeleteEvent(_ClientEvent):
    type: Literal["conversation.item.delete"]
    item_id: _Id


class ConversationItemRetrieveEvent(_ClientEvent):
    type: Literal["conversation.item.retrieve"]
    item_id: _Id


class ConversationItemTruncateEvent(_ClientEvent):
    type: Literal["conversation.item.truncate"]
    item_id: _Id
    content_index: int = Field(ge=0)
    audio_end_ms: int = Field(ge=0)


class ResponseCreateEvent(_ClientEvent):
    type: Literal["response.create"]
    response: dict[str, Any] | None = None
    additional_instructions: str | None = None  # Voice Live: beside `response`, not inside it


class ResponseCancelEvent(_ClientEvent):
    type: Literal["response.cancel"]
    response_id: _Id | None = None


class OutputAudioBufferClearEvent(_ClientEvent):
    type: Literal["output_audio_buffer.clear"]


class InputAudioTurnStartEvent(_ClientEvent):  # Voice Live: client-driven turns
    type: Literal["input_audio.turn.start"]
    voice_live_only = True
    turn_id: _Id


class InputAudioTurnAppendEvent(_ClientEvent):  # Voice Live
    type: Literal["input_audio.turn.append"]
    voice_live_only = True
    turn_id: _Id
    audio: str


class InputAudioTurnEndEvent(_ClientEvent):  # Voice Live: commits the turn and responds
    type: Literal["input_audio.turn.end"]
    voice_live_only = True
    turn_id: _Id


class InputAudioTurnCancelEvent(_ClientEvent):  # Voice Live
    type: Literal["input_audio.turn.cancel"]
    voice_live_only = True
    turn_id: _Id


class InputAudioClearEvent(_ClientEvent):  # Voice Live
    type: Literal["input_audio.clear"]
    voice_live_only = True


ClientEvent = Annotated[
    SessionUpdateEvent | TranscriptionSessionUpdateEvent | InputAudioBufferAppendEvent | InputAudioBufferCommitEvent
    | InputAudioBufferClearEvent | ConversationItemCreateEvent | ConversationItemDeleteEvent
    | ConversationItemRetrieveEvent | ConversationItemTruncateEvent | ResponseCreateEvent
    | ResponseCancelEvent | OutputAudioBufferClearEvent | InputAudioTurnStartEvent
    | InputAudioTurnAppendEvent | InputAudioTurnEndEvent | InputAudioTurnCancelEvent
    | InputAudioClearEvent,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[ClientEvent] = TypeAdapter(ClientEvent)
_TYPES: dict[str, type[_ClientEvent]] = {
    m.model_fields["type"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in _ClientEvent.__subclasses__()
}
CLIENT_EVENT_TYPES: frozenset[str] = frozenset(_TYPES)
VOICE_LIVE_ONLY: frozenset[str] = frozenset(k for k, m in _TYPES.items() if m.voice_live_only)

# Largest text frame accepted by default (`limits.max_message_bytes`). 15 MiB of base64 is ~4 min
# of 24 kHz PCM16: far more than any sane append, small enough that one message cannot exhaust
# the ingress's memory.
MAX_FRAME_BYTES = 15 * 1024 * 1024


@dataclass(frozen=True)
class FrameLimits:
    """What one frame may be before it is decoded (the options' `limits` section)."""

    max_bytes: int = MAX_FRAME_BYTES
    max_depth: int = MAX_DEPTH


DEFAULT_FRAME_LIMITS = FrameLimits()


class ParsedError(ProtocolError):
    """A ProtocolError that also knows the client event id it concerns."""

    def __init__(self, base: ProtocolError, event_id: str | None) -> None:
        super().__init__(base.code, base.message, base.param, base.type)
        self.event_id = event_id


def parse_client_event(text: str | bytes,
                       limits: FrameLimits = DEFAULT_FRAME_LIMITS) -> ClientEvent:
    """One WebSocket frame -> a typed client event, or `ParsedError`; no other exception."""
    try:
        with no_stray_exceptions("the message", ErrorCode.INVALID_JSON):
            raw = _decode(text, limits)
    except ProtocolError as err:
        raise ParsedError(err, None) from None
    event_id = raw.get("event_id")
    if not isinstance(event_id, str) or len(event_id) > MAX_NAME_CHARS:
        event_id = None  # not echoed: the error below (if any) says why
    try:
        with no_stray_exceptions("the event"):
            return _validate(raw)
    except ProtocolError as err:
        raise ParsedError(err, event_id) from None


def _validate(raw: dict[str, Any]) -> ClientEvent:
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.MISSING_REQUIRED_PARAMETER, "message has no string 'type'",
                            "type")
    if kind not in CLIENT_EVENT_TYPES:
        raise ProtocolError(ErrorCode.UNKNOWN_EVENT_TYPE,
                            f"unknown or unsupported event type {kind[:64]!r}", "type")
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        base = validation_error(exc, "")
        # Drop the union tag pydantic puts first in the location ("session.update.session" ->
        # "session") so `param` names the field as the client wrote it.
        param = (base.param or "").lstrip(".")
        if param.startswith(kind):
            param = param[len(kind):].lstrip(".")
        base.param = param or None
        base.message = base.message.replace(f"'.{kind}.", "'").replace(f"'{kind}.", "'")
        raise base from None


# --- decoding: everything bounded before and while json.loads runs ---------------------------


def _decode(text: str | bytes, limits: FrameLimits) -> dict[str, Any]:
    if len(text) > limits.max_bytes:
        raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, f"message of {len(text)} bytes exceeds "
                            f"the {limits.max_bytes}-byte limit (limits.max_message_bytes)")
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(ErrorCode.INVALID_JSON, f"message is not valid UTF-8 (byte "
                                f"{exc.start}: {exc.reason})") from None
    _check_depth(text, limits.max_depth)
    _check_surrogates(text)
    try:
        raw = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant,
                         object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"message is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON, "message must be a JSON object")
    if _SURROGATE_ESCAPE.search(text):
        _check_decoded_surrogates(raw)
    return raw


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPENERS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_CHUNK = 1 << 20


def _check_depth(text: str, max_depth: int) -> None:
    """Refuse nesting deeper than `max_depth`: CPython's decoder recurses once per level and a
    5000-deep array would raise RecursionError (or worse, deep in pydantic or json.dumps).

    Strings are cut out (a bracket in an instruction is not nesting), the remaining brackets
    become +1 / -1 and their running sum is the depth. numpy keeps a 15 MiB frame of brackets
    at ~0.1 s, a twentieth of what json.loads spends on it; a loop in Python took 1.5 s."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # it cannot nest deeper than it has brackets: audio appends end here
    brackets = _STRING.sub("", text).encode("utf-8", "surrogatepass").translate(
        _OPENERS, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = np.frombuffer(brackets, np.uint8, min(_CHUNK, len(brackets) - start), start)
        levels = depth + np.cumsum(np.where(chunk == ord("["), 1, -1))
        if levels.max() > max_depth:
            raise ProtocolError(ErrorCode.INVALID_JSON, f"message nests deeper than {max_depth} "
                                "levels (limits.max_json_depth)")
        depth = int(levels[-1])


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(pairs) > MAX_KEYS:
        raise ProtocolError(ErrorCode.INVALID_VALUE, f"an object of {len(pairs)} fields is more "
                            f"than the {MAX_KEYS} accepted")
    return dict(pairs)


def _int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ProtocolError(ErrorCode.INVALID_VALUE, f"an integer of {digits} digits is out of "
                            f"range (at most {MAX_INT_DIGITS})")
    return int(literal)


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ProtocolError(ErrorCode.INVALID_VALUE,
                            f"the number {literal[:32]} is out of range for a 64-bit float")
    return value


def _constant(name: str) -> float:
    raise ProtocolError(ErrorCode.INVALID_JSON, f"{name} is not a JSON value")


# Lone UTF-16 surrogates ("\ud800") are valid JSON escapes but not text: any later UTF-8
# encoding of the string (the LLM's tokenizer, a log handler) would raise.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = "message contains a lone UTF-16 surrogate"


def _check_surrogates(text: str) -> None:
    """Surrogates in the frame itself (a transport handing over str); bytes were decoded strictly."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(ErrorCode.INVALID_JSON, _LONE_SURROGATE) from None


def _check_decoded_surrogates(raw: dict[str, Any]) -> None:
    """Surrogates from escapes: only frames with a surrogate escape get here (pairs, as
    `json.dumps` writes emoji, are fine; the decoder joins them)."""
    stack: list[Any] = [raw]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise ProtocolError(ErrorCode.INVALID_JSON, _LONE_SURROGATE) from None
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
