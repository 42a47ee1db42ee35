"""Conversation items: the internal model, client-item parsing and per-dialect rendering.

Internally an assistant's spoken content is `audio` and its text content `text` (the beta / Voice
Live names); GA renders them `output_audio` / `output_text`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.ids import new_id
from voxserve.protocol.validation import (
    MAX_NAME_CHARS, MAX_TEXT_CHARS, no_stray_exceptions, validation_error,
)

ContentType = Literal["input_text", "input_audio", "text", "audio"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


class ContentPart(BaseModel):
    type: ContentType
    text: str | None = None
    transcript: str | None = None
    audio: str | None = None  # base64, only for client-provided input_audio

    def spoken_text(self) -> str:
        return (self.text if self.type in ("input_text", "text") else self.transcript) or ""


class Item(BaseModel):
    id: str
    type: Literal["message", "function_call", "function_call_output"]
    status: ItemStatus = "completed"
    role: Literal["user", "assistant", "system"] | None = None
    content: list[ContentPart] = Field(default_factory=list)
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None

    def render(self, dialect: Dialect, with_audio: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "object": "realtime.item", "type": self.type,
                                "status": self.status}
        if self.type == "message":
            data["role"] = self.role
            data["content"] = [_render_part(p, dialect, with_audio) for p in self.content]
        elif self.type == "function_call":
            data.update(call_id=self.call_id, name=self.name, arguments=self.arguments or "")
        else:
            data.update(call_id=self.call_id, output=self.output or "")
        return data


def _render_part(part: ContentPart, dialect: Dialect, with_audio: bool) -> dict[str, Any]:
    kind: str = part.type
    if dialect is Dialect.GA and kind in ("text", "audio"):
        kind = "output_text" if kind == "text" else "output_audio"
    if part.type in ("input_text", "text"):
        return {"type": kind, "text": part.text or ""}
    data: dict[str, Any] = {"type": kind, "transcript": part.transcript}
    if with_audio and part.audio is not None:
        data["audio"] = part.audio
    elif dialect is Dialect.VOICE_LIVE and part.type == "input_audio":
        # The Voice Live SDK types `audio` as a required string on input_audio parts; we do not
        # echo the user's audio back, so it is present and empty.
        data["audio"] = ""
    return data


# --- client-supplied items (conversation.item.create) ----------------------------------------

_CLIENT_CONTENT_TYPES = {"input_text": "input_text", "input_audio": "input_audio",
                         "text": "text", "output_text": "text", "audio": "audio",
                         "output_audio": "audio"}


# Text enters the LLM prompt (see validation.MAX_TEXT_CHARS); audio is bounded by the frame size.
_Text = Annotated[str | None, Field(max_length=MAX_TEXT_CHARS)]
_MAX_PARTS = 32  # real messages have one or two parts


class _ClientPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str = Field(max_length=MAX_NAME_CHARS)
    text: _Text = None
    transcript: _Text = None
    audio: str | None = None


class _ClientItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = Field(None, max_length=64)
    type: Literal["message", "function_call", "function_call_output"]
    object: str | None = Field(None, max_length=MAX_NAME_CHARS)
    status: ItemStatus | None = None
    role: Literal["user", "assistant", "system"] | None = None
    content: list[_ClientPart] | None = Field(None, max_length=_MAX_PARTS)
    call_id: str | None = Field(None, max_length=MAX_NAME_CHARS)
    name: str | None = Field(None, max_length=64)  # a tool name (FunctionTool.name)
    arguments: _Text = None
    output: _Text = None


class ItemReference(BaseModel):
    """`{type: item_reference, id}`: an item of the conversation named in `response.input`."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["item_reference"]
    id: str = Field(max_length=MAX_NAME_CHARS)


def parse_client_item(raw: Any, param: str = "item") -> Item:
    """A client's item (`conversation.item.create`, `response.input`); errors name `param`."""
    with no_stray_exceptions("the item"):
        return _parse_item(raw, param)


def _parse_item(raw: Any, param: str) -> Item:
    try:
        item = _ClientItem.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, param) from None
    item_id = item.id or new_id("item")
    if item.type == "message":
        if item.role is None:
            raise ProtocolError(ErrorCode.MISSING_REQUIRED_PARAMETER,
                                "a message item needs a role", f"{param}.role")
        if not item.content:
            raise ProtocolError(ErrorCode.MISSING_REQUIRED_PARAMETER,
                                "a message item needs content", f"{param}.content")
        text = sum(len(p.text or "") + len(p.transcript or "") for p in item.content)
        if text > MAX_TEXT_CHARS:
            raise ProtocolError(ErrorCode.INVALID_VALUE,
                                f"the item's text is {text} characters; at most {MAX_TEXT_CHARS} "
                                "are accepted", f"{param}.content")
        parts = []
        for i, part in enumerate(item.content):
            kind = _CLIENT_CONTENT_TYPES.get(part.type)
            allowed = {"user": ("input_text", "input_audio"), "system": ("input_text",),
                       "assistant": ("text", "audio")}[item.role]
            if kind not in allowed:
                raise ProtocolError(ErrorCode.INVALID_VALUE,
                                    f"content type {part.type!r} is not valid for a {item.role} message",
                                    f"{param}.content[{i}].type")
            if kind in ("input_text", "text") and part.text is None:
                raise ProtocolError(ErrorCode.MISSING_REQUIRED_PARAMETER,
                                    "text content needs 'text'", f"{param}.content[{i}].text")
            if kind == "input_audio" and part.audio is None and part.transcript is None:
                raise ProtocolError(ErrorCode.MISSING_REQUIRED_PARAMETER,
                                    "input_audio content needs 'audio' or 'transcript'",
                                    f"{param}.content[{i}].audio")
            parts.append(ContentPart(type=kind, text=part.text, transcript=part.transcript,  # type: ignore[arg-type]
                                     audio=part.audio))
        return Item(id=item_id, type="message", role=item.role, content=parts)
    if item.type == "function_call":
        if not item.call_id or not item.name:
            raise ProtocolError(ErrorCode.MISSING_REQUIRED_PARAMETER,
                                "a function_call item needs call_id and name", f"{param}.call_id")
        return Item(id=item_id, type="function_call", call_id=item.call_id, name=item.name,
                    arguments=item.arguments or "{}")
    if not item.call_id:
        raise ProtocolError(ErrorCode.MISSING_REQUIRED_PARAMETER,
                            "a function_call_output item needs call_id", f"{param}.call_id")
    if item.output is None:
        raise ProtocolError(ErrorCode.MISSING_REQUIRED_PARAMETER,
                            "a function_call_output item needs output", f"{param}.output")
    return Item(id=item_id, type="function_call_output", call_id=item.call_id, output=item.output)
