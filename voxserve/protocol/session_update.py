"""`session.update` payloads as pydantic models, and their merge into the session config.

GA nests audio settings (`audio.input.format`, `audio.output.voice`, `output_modalities`); beta
and Voice Live are flat (`input_audio_format`, `voice`, `modalities`). A payload field is named
after the `SessionConfig` field it sets (its alias is the wire name), so the merge is generic:
each field the client sent is applied, an absent one is left alone, and an explicit null clears
where the field's validator says so (`turn_detection: null` turns VAD off). One bad field refuses
the whole update. GA and beta refuse unknown fields; Voice Live warns about them, its convention.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationInfo, model_validator

from voxserve.audio.formats import AudioFormat
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.fields import (
    Boolean, FlatInputFormat, FlatModalities, FlatOutputFormat, GaFormat, GaModalities, MaxTokens, Name,
    NotNull, PayloadContext, SessionInstructions, Speed, Temperature, ToolChoiceField, Tools, Voice,
    VoiceChoice, context_of,
)
from voxserve.protocol.session_models import (
    VOICE_LIVE_TURN_TYPES, InputTranscription, SessionConfig, TurnDetection, VoiceTable,
)
from voxserve.protocol.validation import nested, no_stray_exceptions, refuse, validated

_CONFIG_FIELDS = frozenset(SessionConfig.model_fields)
_MAX_WARNINGS = 8


def _turn_detection(raw: Any, info: ValidationInfo) -> TurnDetection | None:
    """null turns turn detection off; each dialect's semantic type stays in its dialect."""
    if raw is None:
        return None
    td = nested(TurnDetection, raw)
    voice_live = context_of(info).dialect is Dialect.VOICE_LIVE
    if voice_live and td.type == "semantic_vad":
        raise refuse(ErrorCode.INVALID_VALUE,
                     "semantic_vad is an OpenAI type; Voice Live uses azure_semantic_vad", ".type")
    if not voice_live and td.type in VOICE_LIVE_TURN_TYPES:
        raise refuse(ErrorCode.INVALID_VALUE,
                     f"{td.type} is only available on the Voice Live endpoint", ".type")
    return td


def _unavailable(what: str) -> PlainValidator:
    """A protocol field whose only value we serve is null."""
    def check(raw: Any) -> None:
        if raw is not None:
            raise refuse(ErrorCode.INVALID_VALUE, f"{what} is not available on this server yet")
    return PlainValidator(check)


def _realtime(raw: Any) -> str:
    if raw != "realtime":
        raise refuse(ErrorCode.INVALID_VALUE,
                     "only realtime sessions are served here (session.type='realtime')")
    return "realtime"


TurnDetectionField = Annotated[TurnDetection | None, PlainValidator(_turn_detection)]


class _Section(BaseModel):
    """A payload or a part of one. Fields named after SessionConfig fields are merged into it."""

    model_config = ConfigDict(extra="forbid")
    # Protocol fields that have no effect here yet, accepted and dropped: refusing them would
    # break clients that echo back the session they were sent.
    ignored: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.ignored:
            return {k: v for k, v in data.items() if k not in cls.ignored}
        return data

    def changes(self, current: SessionConfig) -> dict[str, Any]:
        """The SessionConfig fields the client set, nested sections flattened."""
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if isinstance(value, _Section):
                out.update(value.changes(current))
            elif name in _CONFIG_FIELDS:
                out[name] = value
        return out

    def warnings(self, raw: dict[str, Any]) -> list[tuple[str, str]]:
        """(message, param) for the fields of `raw` accepted but ignored, sent as warnings."""
        return []


class _Extensions(_Section):
    """`session.voxserve`: VoxServe's own settings, in every dialect."""

    response_timing: Boolean = None


Extensions = Annotated[_Extensions | None, NotNull]


class _GaAudioInput(_Section):
    input_format: GaFormat = Field(None, alias="format")
    transcription: InputTranscription | None = None
    turn_detection: TurnDetectionField = None
    noise_reduction: Annotated[None, _unavailable("noise reduction")] = None


class _GaAudioOutput(_Section):
    output_format: GaFormat = Field(None, alias="format")
    voice: Voice = None
    speed: Speed = None


class _GaAudio(_Section):
    input: _GaAudioInput | None = None
    output: _GaAudioOutput | None = None


class GaSessionUpdate(_Section):
    """GA's nested shape (`session.type` 'realtime')."""

    ignored = frozenset({"tracing", "truncation", "prompt", "include", "parallel_tool_calls",
                         "object", "id", "expires_at", "client_secret"})
    type: Annotated[str | None, PlainValidator(_realtime)] = None
    model: Name = None
    instructions: SessionInstructions = None
    audio_output: GaModalities = Field(None, alias="output_modalities")
    tools: Tools = None
    tool_choice: ToolChoiceField = None
    max_output_tokens: MaxTokens = None
    audio: _GaAudio | None = None
    voxserve: Extensions = None


class FlatSessionUpdate(_Section):
    """The flat shape of beta and Voice Live; Voice Live's own fields are in its subclass."""

    ignored = frozenset({"parallel_tool_calls", "object", "id", "expires_at", "include",
                         "metadata", "input_audio_transcription_ignored", "tool_choice_ignored"})
    model: Name = None
    instructions: SessionInstructions = None
    audio_output: FlatModalities = Field(None, alias="modalities")
    voice: Voice = None
    input_format: FlatInputFormat = Field(None, alias="input_audio_format")
    output_format: FlatOutputFormat = Field(None, alias="output_audio_format")
    transcription: InputTranscription | None = Field(None, alias="input_audio_transcription")
    turn_detection: TurnDetectionField = None
    tools: Tools = None
    tool_choice: ToolChoiceField = None
    temperature: Temperature = None
    max_output_tokens: MaxTokens = Field(None, alias="max_response_output_tokens")
    voxserve: Extensions = None


class VoiceLiveSessionUpdate(FlatSessionUpdate):
    """The flat shape with Voice Live's fields: each one below is Voice Live only."""

    # Voice Live: unknown fields get a warning. "ignore", not "allow": an extra named like a
    # field (`audio_output`, the name of `modalities`) would count as that field being set.
    model_config = ConfigDict(extra="ignore")
    # Voice Live features this server does not have: a warning when set, never an error.
    unsupported: ClassVar[frozenset[str]] = frozenset({
        "input_audio_noise_reduction", "input_audio_echo_cancellation", "animation",
        "output_audio_timestamp_types", "interim_response", "reasoning_effort", "agent"})
    input_audio_sampling_rate: Literal[8000, 16000, 24000] | None = None  # Voice Live
    avatar: Annotated[None, _unavailable("avatar rendering")] = None  # Voice Live

    def changes(self, current: SessionConfig) -> dict[str, Any]:
        out = super().changes(current)
        rate = self.input_audio_sampling_rate
        if rate is not None:  # applies to the format set here, or else to the current one
            encoding = out.get("input_format", current.input_format).encoding
            if encoding != "pcm16" and rate != 8000:
                raise ProtocolError(ErrorCode.INVALID_VALUE, "G.711 input is always 8000 Hz",
                                    "session.input_audio_sampling_rate")
            out["input_format"] = AudioFormat(encoding, rate)
        return out

    def warnings(self, raw: dict[str, Any]) -> list[tuple[str, str]]:
        known = {f.alias or name for name, f in type(self).model_fields.items()} | self.ignored
        out = []
        for key, value in raw.items():
            if key in known:
                continue
            param = f"session.{key[:64]}"
            if key not in self.unsupported:
                out.append((f"unknown parameter '{param}' was ignored", param))
            elif value is not None:
                out.append((f"'{key}' is not supported by this server yet and was ignored", param))
        if len(out) > _MAX_WARNINGS:  # one message, a handful of events: not one per field
            rest = len(out) - _MAX_WARNINGS + 1
            out[_MAX_WARNINGS - 1:] = [(f"{rest} more unknown or unsupported fields were ignored",
                                        "session")]
        return out


class UpdateResult(BaseModel):
    config: SessionConfig
    warnings: list[tuple[str, str]] = Field(default_factory=list)  # (message, param)


_PAYLOADS: dict[Dialect, type[_Section]] = {
    Dialect.GA: GaSessionUpdate, Dialect.BETA: FlatSessionUpdate,
    Dialect.VOICE_LIVE: VoiceLiveSessionUpdate,
}


def apply_update(current: SessionConfig, raw: Any, dialect: Dialect,
                 voices: VoiceTable, audio_started: bool) -> UpdateResult:
    """`current` with the client's `session` applied, or a ProtocolError naming the bad field;
    `current` itself is never changed."""
    with no_stray_exceptions("session.update"):
        if not isinstance(raw, dict):
            raise ProtocolError(ErrorCode.INVALID_TYPE, "session must be an object", "session")
        update = validated(_PAYLOADS[dialect], raw, "session", PayloadContext(dialect, voices))
        changes = update.changes(current)
        choice: VoiceChoice | None = changes.pop("voice", None)
        if choice is not None:
            if audio_started and choice.name != current.voice:
                param = "session.audio.output.voice" if dialect is Dialect.GA else "session.voice"
                raise ProtocolError(ErrorCode.INVALID_VALUE,
                                    "voice cannot change once the session has produced audio", param)
            changes.update(voice=choice.name, voice_raw=choice.raw)
        config = current.model_copy(deep=True, update=changes)
        return UpdateResult(config=config, warnings=update.warnings(raw))
