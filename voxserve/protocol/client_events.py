"""Client events: one pydantic model per event, joined in a discriminated union parsed once.

Client events may lack `event_id`, put `type` last (the Voice Live SDK does) or carry explicit
nulls; unknown extra fields are tolerated, as the reference services tolerate them. Anything that
cannot be parsed becomes a `ProtocolError` carrying the client's `event_id` when it had one.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.session_config import validation_error


class _ClientEvent(BaseModel):
    # strict: "0" is not an index and 5.0 is not a millisecond count; say so rather than guess
    model_config = ConfigDict(extra="ignore", strict=True)
    event_id: str | None = None


class SessionUpdateEvent(_ClientEvent):
    type: Literal["session.update"]
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
    previous_item_id: str | None = None


class ConversationItemDeleteEvent(_ClientEvent):
    type: Literal["conversation.item.delete"]
    item_id: str


class ConversationItemRetrieveEvent(_ClientEvent):
    type: Literal["conversation.item.retrieve"]
    item_id: str


class ConversationItemTruncateEvent(_ClientEvent):
    type: Literal["conversation.item.truncate"]
    item_id: str
    content_index: int = Field(ge=0)
    audio_end_ms: int = Field(ge=0)


class ResponseCreateEvent(_ClientEvent):
    type: Literal["response.create"]
    response: dict[str, Any] | None = None
    additional_instructions: str | None = None  # Voice Live: beside `response`, not inside it


class ResponseCancelEvent(_ClientEvent):
    type: Literal["response.cancel"]
    response_id: str | None = None


class OutputAudioBufferClearEvent(_ClientEvent):
    type: Literal["output_audio_buffer.clear"]


class InputAudioTurnStartEvent(_ClientEvent):  # Voice Live: client-driven turns
    type: Literal["input_audio.turn.start"]
    turn_id: str


class InputAudioTurnAppendEvent(_ClientEvent):  # Voice Live
    type: Literal["input_audio.turn.append"]
    turn_id: str
    audio: str


class InputAudioTurnEndEvent(_ClientEvent):  # Voice Live: commits the turn and responds
    type: Literal["input_audio.turn.end"]
    turn_id: str


class InputAudioTurnCancelEvent(_ClientEvent):  # Voice Live
    type: Literal["input_audio.turn.cancel"]
    turn_id: str


class InputAudioClearEvent(_ClientEvent):  # Voice Live
    type: Literal["input_audio.clear"]


VOICE_LIVE_ONLY: frozenset[str] = frozenset({
    "input_audio.turn.start", "input_audio.turn.append", "input_audio.turn.end",
    "input_audio.turn.cancel", "input_audio.clear"})

ClientEvent = Annotated[
    SessionUpdateEvent | InputAudioBufferAppendEvent | InputAudioBufferCommitEvent
    | InputAudioBufferClearEvent | ConversationItemCreateEvent | ConversationItemDeleteEvent
    | ConversationItemRetrieveEvent | ConversationItemTruncateEvent | ResponseCreateEvent
    | ResponseCancelEvent | OutputAudioBufferClearEvent | InputAudioTurnStartEvent
    | InputAudioTurnAppendEvent | InputAudioTurnEndEvent | InputAudioTurnCancelEvent
    | InputAudioClearEvent,
    Field(discriminator="type"),
]

_ADAPTER: TypeAdapter[ClientEvent] = TypeAdapter(ClientEvent)
CLIENT_EVENT_TYPES: frozenset[str] = frozenset(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in _ClientEvent.__subclasses__()
)

# Largest text frame accepted. 15 MiB of base64 is ~80 s of 24 kHz PCM16: far more than any
# sane append, small enough that one message cannot exhaust the ingress's memory.
MAX_FRAME_BYTES = 15 * 1024 * 1024


class ParsedError(ProtocolError):
    """A ProtocolError that also knows the client event id it concerns."""

    def __init__(self, base: ProtocolError, event_id: str | None) -> None:
        super().__init__(base.code, base.message, base.param, base.type)
        self.event_id = event_id


def parse_client_event(text: str | bytes) -> ClientEvent:
    """One WebSocket text frame -> a typed client event, or `ParsedError`."""
    if len(text) > MAX_FRAME_BYTES:
        raise ParsedError(ProtocolError(ErrorCode.AUDIO_TOO_LARGE,
                                        f"message of {len(text)} bytes exceeds the "
                                        f"{MAX_FRAME_BYTES}-byte limit"), None)
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ParsedError(ProtocolError(ErrorCode.INVALID_JSON,
                                        f"message is not valid JSON: {exc}"), None) from None
    if not isinstance(raw, dict):
        raise ParsedError(ProtocolError(ErrorCode.INVALID_JSON,
                                        "message must be a JSON object"), None)
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ParsedError(ProtocolError(ErrorCode.MISSING_REQUIRED_PARAMETER,
                                        "message has no string 'type'", "type"), event_id)
    if kind not in CLIENT_EVENT_TYPES:
        raise ParsedError(ProtocolError(ErrorCode.UNKNOWN_EVENT_TYPE,
                                        f"unknown or unsupported event type {kind!r}", "type"),
                          event_id)
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
        raise ParsedError(base, event_id) from None
