"""Payload fields that `session.update` and `response.create` share, each validated once.

Each alias below is a type to put on a pydantic field: its validator receives the client's raw
value (null included, so each decides what null means) and returns the typed value, or raises
an error that becomes a protocol error naming the field. Validators that differ by dialect read
the `PayloadContext` the payload is validated with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BeforeValidator, PlainValidator, ValidationInfo

from voxserve.audio.formats import AudioFormat
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode
from voxserve.protocol.session_models import (
    FunctionTool, InterimResponse, ToolChoice, ToolChoiceFunction, VoiceTable,
)
from voxserve.protocol.validation import (
    MAX_INSTRUCTIONS_CHARS, MAX_NAME_CHARS, MAX_TOOLS, nested, refuse,
)

_INVALID_TYPE, _INVALID_VALUE = ErrorCode.INVALID_TYPE, ErrorCode.INVALID_VALUE


@dataclass(frozen=True)
class PayloadContext:
    """What a payload's validators need beyond the payload: passed as pydantic's `context`."""

    dialect: Dialect
    voices: VoiceTable


def context_of(info: ValidationInfo) -> PayloadContext:
    """The context a validator runs in (a payload model validated without one is a bug)."""
    if not isinstance(info.context, PayloadContext):
        raise TypeError("payload models are validated with context=PayloadContext(...)")
    return info.context


def _string(raw: Any, limit: int) -> str:
    if not isinstance(raw, str):
        raise refuse(_INVALID_TYPE, "must be a string")
    if len(raw) > limit:
        raise refuse(_INVALID_VALUE, f"{len(raw)} characters is more than the {limit} accepted")
    return raw


def _not_null(raw: Any) -> Any:
    if raw is None:
        raise refuse(_INVALID_TYPE, "must not be null")
    return raw


def _name(raw: Any) -> str:
    return _string(raw, MAX_NAME_CHARS)


def _instructions(raw: Any) -> str:
    return _string(raw, MAX_INSTRUCTIONS_CHARS)


def _instructions_or_empty(raw: Any) -> str:
    """In session.update an explicit null clears the instructions."""
    return "" if raw is None else _instructions(raw)


# --- modalities: both return whether the output is spoken --------------------------------------


def _ga_modalities(raw: Any) -> bool:
    if raw == ["audio"]:
        return True
    if raw == ["text"]:
        return False
    raise refuse(_INVALID_VALUE, "must be ['audio'] or ['text']")


def _flat_modalities(raw: Any, info: ValidationInfo) -> bool:
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        raise refuse(_INVALID_TYPE, "must be an array of strings")
    allowed = {"text", "audio"}
    if context_of(info).dialect is Dialect.VOICE_LIVE:
        allowed |= {"animation", "avatar"}
    if "text" not in raw or not set(raw) <= allowed:
        raise refuse(_INVALID_VALUE, "must be ['text'] or ['text', 'audio']")
    return "audio" in raw


# --- voice ------------------------------------------------------------------------------------


class VoiceChoice(NamedTuple):
    name: str  # a name the VoiceTable knows: the client's, or the default it falls back to
    raw: dict[str, Any] | None  # the voice object as sent (Voice Live echoes it back), if one
    requested: str | None = None  # the client's name when it was unknown and fell back
    speed: float | None = None  # Voice Live prosody `rate`, as a TTS speed
    volume: float | None = None  # Voice Live prosody `volume`, as an output gain


def _voice(raw: Any, info: ValidationInfo) -> VoiceChoice:
    """A bare name in every dialect; GA also `{id}`; Voice Live also its voice objects."""
    ctx = context_of(info)
    name: Any = raw
    if isinstance(raw, dict) and ctx.dialect is Dialect.GA:
        name = raw.get("id")
    elif isinstance(raw, dict) and ctx.dialect is Dialect.VOICE_LIVE:
        name = raw.get("name") or raw.get("model")
        if not isinstance(name, str):
            raise refuse(ErrorCode.MISSING_REQUIRED_PARAMETER, "voice object needs a 'name'", ".name")
        if raw.get("type") is not None and raw["type"] not in VOICE_LIVE_VOICE_TYPES:
            raise refuse(_INVALID_VALUE, "voice type must be one of "
                         + ", ".join(sorted(VOICE_LIVE_VOICE_TYPES)), ".type")
    if not isinstance(name, str):
        raise refuse(_INVALID_TYPE, "must be a voice name")
    obj = raw if isinstance(raw, dict) else None
    speed = _prosody_rate(obj.get("rate")) if obj is not None else None
    volume = _prosody_volume(obj.get("volume")) if obj is not None else None
    if name not in ctx.voices:
        if ctx.voices.strict:
            raise refuse(_INVALID_VALUE, ctx.voices.unknown(name))
        return VoiceChoice(ctx.voices.default, obj, requested=name, speed=speed, volume=volume)
    return VoiceChoice(name, obj, speed=speed, volume=volume)


# azure-ai-voicelive 1.3.1's voice kinds (AzureVoiceType, and the OpenAI and native voices)
VOICE_LIVE_VOICE_TYPES = frozenset({"azure-standard", "azure-custom", "azure-personal",
                                    "azure-realtime-native", "avatar-voice-sync", "openai"})
# Voice object settings hibari cannot honour (only `rate` becomes its speed): a notice each
VOICE_SETTINGS_WITHOUT_EFFECT = ("pitch", "style", "temperature")

# SSML volume words as gains (x-loud is about +6 dB; louder clips speech that is already loud)
_VOLUME_WORDS = {"silent": 0.0, "x-soft": 0.25, "soft": 0.5, "medium": 1.0, "default": 1.0,
                 "loud": 1.4, "x-loud": 2.0}


def _prosody(raw: Any, what: str, words: dict[str, float], unit: float) -> float | None:
    """An SSML prosody value as a factor: a word ("fast", "soft"), a change ("+20%", "-10%"),
    or a number (times `unit`: a rate is a multiplier, a volume 0-100)."""
    if raw is None:
        return None
    text = str(raw).strip().lower()[:16]
    try:
        if text in words:
            return words[text]
        if text.endswith("%"):
            return 1.0 + float(text[:-1]) / 100.0
        return float(text) * unit
    except ValueError:
        raise refuse(_INVALID_VALUE, f"{what} must be a number, a change such as '+20%', or one "
                     "of " + ", ".join(words), f".{what}") from None


def _prosody_volume(raw: Any) -> float | None:
    """Voice Live's voice `volume` (100 is the voice's normal loudness) as an output gain."""
    value = _prosody(raw, "volume", _VOLUME_WORDS, 0.01)
    if value is not None and not 0.0 <= value <= 2.0:
        raise refuse(_INVALID_VALUE, "volume must be between silent and twice normal", ".volume")
    return value


_RATE_WORDS = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25,
               "x-fast": 1.5}


def _prosody_rate(raw: Any) -> float | None:
    """Voice Live's voice `rate` as the TTS speed it asks for, within what the TTS speaks well."""
    value = _prosody(raw, "rate", _RATE_WORDS, 1.0)
    if value is None:
        return None
    if not 0.25 <= value <= 4.0:
        raise refuse(_INVALID_VALUE, "rate must be between 0.25 and 4 times normal", ".rate")
    return min(max(value, 0.25), 1.5)  # the range of GA `speed`


def _no_stored_prompts(raw: Any) -> None:
    """GA `prompt` (a stored prompt by id): none exist here; null is fine."""
    if raw is not None:
        raise refuse(_INVALID_VALUE, "stored prompts do not exist on this server; send the "
                     "prompt's text as `instructions`")


LOGPROBS = "item.input_audio_transcription.logprobs"
PHRASES = "item.input_audio_transcription.phrases"  # Voice Live; not available here (a warning)


def _include(raw: Any, info: ValidationInfo) -> bool:
    """`include`: whether transcripts carry log probabilities; null clears it."""
    if raw is None:
        return False
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise refuse(_INVALID_TYPE, "must be an array of strings")
    known = {LOGPROBS, PHRASES} if context_of(info).dialect is Dialect.VOICE_LIVE else {LOGPROBS}
    if set(raw) - known:
        raise refuse(_INVALID_VALUE, "the values are " + ", ".join(sorted(known)))
    return LOGPROBS in raw


def _boolean(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise refuse(_INVALID_TYPE, "must be a boolean")
    return raw


# --- numbers ------------------------------------------------------------------------------------


def _number(lo: float, hi: float) -> Any:
    def check(raw: Any) -> float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise refuse(_INVALID_TYPE, "must be a number")
        if not lo <= raw <= hi:
            raise refuse(_INVALID_VALUE, f"must be between {lo} and {hi}")
        return float(raw)
    return PlainValidator(check)


def _max_tokens(raw: Any) -> int | Literal["inf"]:
    """null and "inf" both mean no limit (null clears a limit set before)."""
    if raw == "inf" or raw is None:
        return "inf"
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise refuse(_INVALID_TYPE, "must be an integer or 'inf'")
    if not 1 <= raw <= 4096:
        raise refuse(_INVALID_VALUE, "must be between 1 and 4096")
    return raw


# --- tools --------------------------------------------------------------------------------------


def _tools(raw: Any) -> list[FunctionTool]:
    """null clears the tools."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise refuse(_INVALID_TYPE, "must be an array")
    if len(raw) > MAX_TOOLS:
        raise refuse(_INVALID_VALUE, f"{len(raw)} tools is more than the {MAX_TOOLS} accepted")
    tools = [nested(FunctionTool, t, f"[{i}]") for i, t in enumerate(raw)]
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise refuse(_INVALID_VALUE, "tool names must be unique")
    return tools


def _tool_choice(raw: Any) -> ToolChoice:
    if raw in ("auto", "none", "required"):
        return raw  # type: ignore[no-any-return]
    if isinstance(raw, dict):
        return nested(ToolChoiceFunction, raw)
    raise refuse(_INVALID_VALUE, "must be auto, none, required or {type: function, name}")


# --- audio formats ------------------------------------------------------------------------------


def _ga_format(raw: Any) -> AudioFormat:
    if not isinstance(raw, dict):
        raise refuse(_INVALID_TYPE, "must be an object")
    kind = raw.get("type", "audio/pcm")
    if kind == "audio/pcm":
        rate = raw.get("rate", 24000)
        if rate != 24000:
            raise refuse(_INVALID_VALUE, f"audio/pcm rate must be 24000, got {str(rate)[:20]}", ".rate")
        return AudioFormat("pcm16", 24000)
    if kind == "audio/pcmu":
        return AudioFormat("g711_ulaw", 8000)
    if kind == "audio/pcma":
        return AudioFormat("g711_alaw", 8000)
    raise refuse(_INVALID_VALUE, f"unsupported audio format {str(kind)[:MAX_NAME_CHARS]!r}", ".type")


_FLAT_FORMATS = {
    "pcm16": AudioFormat("pcm16", 24000),
    "g711_ulaw": AudioFormat("g711_ulaw", 8000),
    "g711_alaw": AudioFormat("g711_alaw", 8000),
}
_VOICE_LIVE_OUTPUT_FORMATS = {
    **_FLAT_FORMATS,
    "pcm16_8000hz": AudioFormat("pcm16", 8000),
    "pcm16_16000hz": AudioFormat("pcm16", 16000),
}


def _flat_input_format(raw: Any) -> AudioFormat:
    if not isinstance(raw, str) or raw not in _FLAT_FORMATS:
        raise refuse(_INVALID_VALUE, f"must be one of {sorted(_FLAT_FORMATS)}")
    return _FLAT_FORMATS[raw]


def _flat_output_format(raw: Any, info: ValidationInfo) -> AudioFormat:
    vl = context_of(info).dialect is Dialect.VOICE_LIVE
    table = _VOICE_LIVE_OUTPUT_FORMATS if vl else _FLAT_FORMATS
    if not isinstance(raw, str) or raw not in table:
        raise refuse(_INVALID_VALUE, f"must be one of {sorted(table)}")
    return table[raw]


def _interim(raw: Any) -> InterimResponse | None:
    """Voice Live `interim_response`: static texts, or null for none."""
    if raw is None:
        return None
    if isinstance(raw, dict) and raw.get("type") == "llm_interim_response":
        raise refuse(_INVALID_VALUE, "llm_interim_response is not available on this server (an "
                     "LLM filler would wait for the answer's own LLM slot): use "
                     "static_interim_response with texts", ".type")
    return nested(InterimResponse, raw)


# --- the field types --------------------------------------------------------------------------
# `X | None` inside each Annotated lets the validator see null; a model field typed `Alias | None`
# instead treats null as "not given" before the validator runs.

NotNull = BeforeValidator(_not_null)  # for nested models, whose null would otherwise pass
Name = Annotated[str | None, PlainValidator(_name)]
Instructions = Annotated[str | None, PlainValidator(_instructions)]
SessionInstructions = Annotated[str | None, PlainValidator(_instructions_or_empty)]
GaModalities = Annotated[bool | None, PlainValidator(_ga_modalities)]
FlatModalities = Annotated[bool | None, PlainValidator(_flat_modalities)]
Voice = Annotated[VoiceChoice | None, PlainValidator(_voice)]
Boolean = Annotated[bool | None, PlainValidator(_boolean)]
Temperature = Annotated[float | None, _number(0.0, 2.0)]
Speed = Annotated[float | None, _number(0.25, 1.5)]
MaxTokens = Annotated[int | Literal["inf"] | None, PlainValidator(_max_tokens)]
Tools = Annotated[list[FunctionTool] | None, PlainValidator(_tools)]
ToolChoiceField = Annotated[ToolChoice | None, PlainValidator(_tool_choice)]
GaFormat = Annotated[AudioFormat | None, PlainValidator(_ga_format)]
FlatInputFormat = Annotated[AudioFormat | None, PlainValidator(_flat_input_format)]
FlatOutputFormat = Annotated[AudioFormat | None, PlainValidator(_flat_output_format)]
StoredPrompt = Annotated[None, PlainValidator(_no_stored_prompts)]
Include = Annotated[bool | None, PlainValidator(_include)]
Interim = Annotated[InterimResponse | None, PlainValidator(_interim)]

