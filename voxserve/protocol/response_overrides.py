"""`response.create` overrides: what one response asks to change, typed, for each dialect.

The client's `response` object may override the modalities, voice, instructions, tools, token
limit and (beta / Voice Live) temperature of one response, run it out of the conversation
(`conversation: "none"`), give it explicit `input` items, its own output audio format, and tag
it with `metadata`. Voice Live also sends `additional_instructions` beside `response`, and inside
it `cancel_previous` (default true), `commit` (false: out of the conversation),
`append_input_items` (added to the conversation first) and `pre_generated_assistant_message`
(spoken as written, no LLM call). Validators are the ones `session.update` uses (`fields`).
Known fields without effect here and unknown fields are accepted and reported as `notices`
(Voice Live turns them into warnings). Merging with the session's config is the session's job:
here `None` means "not overridden".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator

from voxserve.audio.formats import AudioFormat
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.fields import (
    Boolean, FlatModalities, FlatOutputFormat, GaFormat, GaModalities, Instructions, Interim,
    MaxTokens,
    Name, PayloadContext, StoredPrompt, Temperature, ToolChoiceField, Tools, Voice,
)
from voxserve.protocol.items import Item, ItemReference, parse_client_item
from voxserve.protocol.session_models import (
    FunctionTool, InterimResponse, ToolChoice, VoiceTable,
)
from voxserve.protocol.validation import (
    MAX_INSTRUCTIONS_CHARS, MAX_METADATA_KEY_CHARS, MAX_METADATA_PAIRS, MAX_METADATA_VALUE_CHARS,
    capped, no_stray_exceptions, noted_fields, refuse, validated,
)


@dataclass(frozen=True)
class ResponseOverrides:
    """One `response.create`'s overrides; `None` leaves the session's setting in force."""

    audio_output: bool | None = None  # spoken (audio + transcript) or text only
    voice: str | None = None  # the client's voice name, known to the VoiceTable
    instructions: str | None = None  # replaces the session's instructions
    additional_instructions: str | None = None  # Voice Live: appended to the instructions
    tools: list[FunctionTool] | None = None  # [] when the client sent null or []
    tool_choice: ToolChoice | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    temperature: float | None = None  # beta / Voice Live only: GA has no per-response temperature
    in_conversation: bool = True  # False for GA-style `conversation: "none"`
    input: list[Item | ItemReference] | None = None  # explicit context instead of the conversation
    metadata: dict[str, str] | None = None
    cancel_previous: bool = False  # Voice Live: a new response replaces the active one
    output_format: AudioFormat | None = None
    append_items: list[Item] | None = None  # Voice Live: added to the conversation first
    verbatim: str | None = None  # Voice Live pre-generated message: spoken as written
    interim: InterimResponse | None = None  # Voice Live: this response's filler speech
    voice_requested: str | None = None  # an unknown voice name that fell back to the default
    speed: float | None = None  # Voice Live voice `rate`
    volume: float | None = None  # Voice Live voice `volume`, a gain
    notices: tuple[tuple[str, str], ...] = ()  # (message, param): accepted, without effect


def _array(raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise refuse(ErrorCode.INVALID_TYPE, "must be an array")
    return raw


def _metadata(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise refuse(ErrorCode.INVALID_TYPE, "must be an object of strings")
    if len(raw) > MAX_METADATA_PAIRS:
        raise refuse(ErrorCode.INVALID_VALUE, f"at most {MAX_METADATA_PAIRS} pairs are accepted")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise refuse(ErrorCode.INVALID_TYPE, "values must be strings", f".{key[:64]}")
        if len(key) > MAX_METADATA_KEY_CHARS or len(value) > MAX_METADATA_VALUE_CHARS:
            raise refuse(ErrorCode.INVALID_VALUE, f"keys have at most {MAX_METADATA_KEY_CHARS} "
                         f"characters, values at most {MAX_METADATA_VALUE_CHARS}", f".{key[:64]}")
    return raw


_Entries = Annotated[list[Any] | None, PlainValidator(_array)]
_Metadata = Annotated[dict[str, str] | None, PlainValidator(_metadata)]


class _Response(BaseModel):
    """The fields every dialect shares."""

    model_config = ConfigDict(extra="ignore")
    # protocol fields without effect here, wire name -> why (a notice when not null)
    noted: ClassVar[dict[str, str]] = {}
    instructions: Instructions | None = None  # null: the session's
    tools: Tools = None  # null: no tools for this response
    tool_choice: ToolChoiceField = None
    # Both names in every dialect, as today; null means no limit. The flat name wins if both.
    max_output_tokens: MaxTokens = None
    max_response_output_tokens: MaxTokens = None
    conversation: Name | None = None  # "none": out of the conversation; anything else: in it
    input: _Entries = None
    input_items: _Entries = None  # an older name of `input`
    metadata: _Metadata | None = None


class _GaAudioOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")
    voice: Voice | None = None
    format: GaFormat = None


class _GaAudio(BaseModel):
    model_config = ConfigDict(extra="ignore")
    output: _GaAudioOutput | None = None


class _GaResponse(_Response):
    noted = {"reasoning": "has no effect: the served model does not reason",
             "include": "is not implemented yet"}
    audio_output: GaModalities = Field(None, alias="output_modalities")
    prompt: StoredPrompt = None
    audio: _GaAudio | None = None


class _FlatResponse(_Response):
    audio_output: FlatModalities = Field(None, alias="modalities")
    voice: Voice | None = None  # null: the session's
    temperature: Temperature = None
    output_audio_format: FlatOutputFormat = None


class _VoiceLiveResponse(_FlatResponse):
    noted = {"reasoning_effort": "has no effect: the served model does not reason"}
    interim_response: Interim = None  # Voice Live; null or absent: the session's
    cancel_previous: Boolean | None = None  # Voice Live; null or absent: true
    commit: Boolean | None = None  # false: the output stays out of the conversation
    append_input_items: _Entries = None
    pre_generated_assistant_message: dict[str, Any] | None = None


_PAYLOADS: dict[Dialect, type[_Response]] = {
    Dialect.GA: _GaResponse, Dialect.BETA: _FlatResponse, Dialect.VOICE_LIVE: _VoiceLiveResponse,
}


def parse_response_overrides(raw: dict[str, Any] | None, dialect: Dialect, voices: VoiceTable,
                             additional_instructions: str | None = None) -> ResponseOverrides:
    """The `response` object of a `response.create` (None when the event had none, or for a
    response the server starts itself), or a ProtocolError naming the bad field
    (`response.output_modalities`, `response.input[2].role`, ...)."""
    with no_stray_exceptions("response.create"):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ProtocolError(ErrorCode.INVALID_TYPE, "response must be an object", "response")
        model = _PAYLOADS[dialect]
        p = validated(model, raw, "response", PayloadContext(dialect, voices))
        voice = fmt = None
        if isinstance(p, _GaResponse) and p.audio and p.audio.output:
            voice, fmt = p.audio.output.voice, p.audio.output.format
        elif isinstance(p, _FlatResponse):
            voice, fmt = p.voice, p.output_audio_format
        limit = p.max_output_tokens
        if p.max_response_output_tokens is not None:
            limit = p.max_response_output_tokens
        vl = p if isinstance(p, _VoiceLiveResponse) else None
        return ResponseOverrides(
            audio_output=getattr(p, "audio_output", None),
            voice=voice.name if voice is not None else None,
            instructions=p.instructions,
            additional_instructions=_additional(additional_instructions, dialect),
            tools=p.tools, tool_choice=p.tool_choice, max_output_tokens=limit,
            temperature=p.temperature if isinstance(p, _FlatResponse) else None,
            in_conversation=p.conversation != "none" and not (vl and vl.commit is False),
            input=_input(p),
            metadata=p.metadata,
            cancel_previous=vl is not None and vl.cancel_previous is not False,
            output_format=fmt,
            append_items=_append_items(vl),
            verbatim=_verbatim(vl),
            interim=vl.interim_response if vl is not None else None,
            voice_requested=voice.requested if voice is not None else None,
            speed=voice.speed if voice is not None else None,
            volume=voice.volume if voice is not None else None,
            notices=_notices(model, raw, dialect),
        )


def _notices(model: type[_Response], raw: dict[str, Any], dialect: Dialect
             ) -> tuple[tuple[str, str], ...]:
    """Fields accepted without effect: the noted ones set, and (Voice Live) unknown ones. The
    OpenAI dialects ignore unknown fields of `response`, as the reference services do."""
    out = noted_fields(model.noted, raw, "response")
    if dialect is Dialect.VOICE_LIVE:
        known = {f.alias or n for n, f in model.model_fields.items()} | set(model.noted)
        out += [(f"unknown parameter 'response.{k[:64]}' was ignored", f"response.{k[:64]}")
                for k in raw if k not in known]
    return tuple(capped(out, lambda n: (f"{n} more unknown or unsupported fields were ignored",
                                        "response")))


def _append_items(p: _VoiceLiveResponse | None) -> list[Item] | None:
    if p is None or p.append_input_items is None:
        return None
    return [parse_client_item(entry, f"response.append_input_items[{i}]")
            for i, entry in enumerate(p.append_input_items)]


def _verbatim(p: _VoiceLiveResponse | None) -> str | None:
    """The text of Voice Live's `pre_generated_assistant_message` (an assistant message item)."""
    if p is None or p.pre_generated_assistant_message is None:
        return None
    param = "response.pre_generated_assistant_message"
    item = parse_client_item({"type": "message", "role": "assistant",
                              **p.pre_generated_assistant_message}, param)
    text = " ".join(part.text or part.transcript or "" for part in item.content).strip()
    if item.role != "assistant" or not text:
        raise ProtocolError(ErrorCode.INVALID_VALUE, "must be an assistant message with text",
                            param)
    return text


def _additional(text: str | None, dialect: Dialect) -> str | None:
    """Voice Live's `additional_instructions` (other dialects do not have it; empty is none)."""
    if dialect is not Dialect.VOICE_LIVE or not text:
        return None
    if len(text) > MAX_INSTRUCTIONS_CHARS:
        raise ProtocolError(ErrorCode.INVALID_VALUE,
                            f"additional_instructions has {len(text)} characters; at most "
                            f"{MAX_INSTRUCTIONS_CHARS} are accepted", "additional_instructions")
    return text


def _input(p: _Response) -> list[Item | ItemReference] | None:
    """`input` (or its older name `input_items`): items, or references to conversation items."""
    key = "input" if "input" in p.model_fields_set else "input_items"
    entries = p.input if key == "input" else p.input_items
    if entries is None:
        return None
    out: list[Item | ItemReference] = []
    for i, entry in enumerate(entries):
        param = f"response.{key}[{i}]"
        if isinstance(entry, dict) and entry.get("type") == "item_reference":
            out.append(validated(ItemReference, entry, param))
        else:
            out.append(parse_client_item(entry, param))
    return out
