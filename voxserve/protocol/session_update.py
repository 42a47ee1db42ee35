"""`session.update` payloads as pydantic models, and their merge into the session config.

GA nests audio settings (`audio.input.format`, `audio.output.voice`, `output_modalities`); beta
and Voice Live are flat (`input_audio_format`, `voice`, `modalities`). A payload field is named
after the `SessionConfig` field it sets (its alias is the wire name), so the merge is generic:
each field the client sent is applied, an absent one is left alone, and an explicit null clears
where the field's validator says so (`turn_detection: null` turns VAD off).

Outcomes are per field (the rule is written out in docs/protocol.md): a field VoxServe implements
takes effect; a known protocol field it does not implement (`noted`) is accepted with a notice; a
malformed value is refused with an error naming it, and only that field is dropped. GA and beta
refuse unknown fields that way; Voice Live warns about them, its convention.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel, ConfigDict, Field, PlainValidator, ValidationError, ValidationInfo, model_validator,
)

from voxserve.audio.formats import AudioFormat
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.fields import (
    PHRASES, VOICE_SETTINGS_WITHOUT_EFFECT, Boolean, FlatInputFormat, FlatModalities,
    FlatOutputFormat, GaFormat, GaModalities, Include, Interim, MaxTokens, Name, NotNull,
    PayloadContext,
    SessionInstructions, Speed, StoredPrompt, Temperature, ToolChoiceField, Tools, Voice,
    VoiceChoice, context_of,
)
from voxserve.protocol.session_models import (
    OPENAI_NOISE_TYPES, VOICE_LIVE_TURN_FIELDS, VOICE_LIVE_TURN_TYPES, Animation, EchoCancellation,
    InputTranscription, NoiseReduction, NoiseReductionSetting, SessionConfig, TruncationConfig,
    TurnDetection, VoiceTable,
)
from voxserve.protocol.validation import (
    capped, error_of, nested, no_stray_exceptions, noted_fields, refuse,
)

_CONFIG_FIELDS = frozenset(SessionConfig.model_fields)


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
    if not voice_live and (extension := next((k for k in VOICE_LIVE_TURN_FIELDS if k in raw),
                                             None)):
        raise refuse(ErrorCode.UNKNOWN_PARAMETER,
                     f"{extension} is a Voice Live setting", f".{extension}")
    return td


def _noise_reduction(raw: Any, info: ValidationInfo) -> NoiseReduction | None:
    """`{type}` -> the preset; null turns noise suppression off."""
    if raw is None:
        return None
    kind = nested(NoiseReductionSetting, raw).type
    if kind not in OPENAI_NOISE_TYPES and context_of(info).dialect is not Dialect.VOICE_LIVE:
        raise refuse(ErrorCode.INVALID_VALUE, f"{kind} is a Voice Live type; this endpoint has "
                     "near_field and far_field", ".type")
    return kind


def _null_or(model: type[BaseModel]) -> PlainValidator:
    """A setting given as an object of `model`; null turns it off."""
    return PlainValidator(lambda raw: None if raw is None else nested(model, raw))


def _timestamp_types(raw: Any) -> bool:
    """`output_audio_timestamp_types`: whether word timestamps are sent (null or [] stops them)."""
    if raw is None:
        return False
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise refuse(ErrorCode.INVALID_TYPE, "must be an array of timestamp types")
    if set(raw) - {"word"}:
        raise refuse(ErrorCode.INVALID_VALUE, "the timestamp types are: word")
    return bool(raw)


NoiseReductionField = Annotated[NoiseReduction | None, PlainValidator(_noise_reduction)]
AnimationField = Annotated[Animation | None, _null_or(Animation)]
TimestampTypes = Annotated[bool | None, PlainValidator(_timestamp_types)]
EchoCancellationField = Annotated[EchoCancellation | None, _null_or(EchoCancellation)]


def _unavailable(what: str) -> PlainValidator:
    """A protocol field whose only value we serve is null."""
    def check(raw: Any) -> None:
        if raw is not None:
            raise refuse(ErrorCode.INVALID_VALUE, f"{what} is not available on this server yet")
    return PlainValidator(check)


def _truncation(raw: Any) -> TruncationConfig:
    """GA `truncation`; null means the default, "auto"."""
    if raw is None or raw in ("auto", "disabled"):
        return TruncationConfig(type=raw or "auto")
    if not isinstance(raw, dict) or raw.get("type") != "retention_ratio":
        raise refuse(ErrorCode.INVALID_VALUE,
                     "must be 'auto', 'disabled' or {type: 'retention_ratio', retention_ratio}")
    if raw.get("retention_ratio") is None:
        raise refuse(ErrorCode.MISSING_REQUIRED_PARAMETER, "retention_ratio needs a ratio",
                     ".retention_ratio")
    limits = raw.get("token_limits") or {}
    if not isinstance(limits, dict) or set(raw) - {"type", "retention_ratio", "token_limits"} \
            or set(limits) - {"post_instructions"}:
        raise refuse(ErrorCode.UNKNOWN_PARAMETER, "retention_ratio takes retention_ratio and "
                     "token_limits.post_instructions")
    return nested(TruncationConfig, {"type": "retention_ratio",
                                     "retention_ratio": raw.get("retention_ratio"),
                                     "post_instructions_tokens": limits.get("post_instructions")})


def _session_type(raw: Any) -> bool:
    """GA `session.type`: whether the session only transcribes."""
    if raw not in ("realtime", "transcription"):
        raise refuse(ErrorCode.INVALID_VALUE, "session.type must be 'realtime' or 'transcription'")
    return raw == "transcription"


TurnDetectionField = Annotated[TurnDetection | None, PlainValidator(_turn_detection)]


class _Section(BaseModel):
    """A payload or a part of one. Fields named after SessionConfig fields are merged into it."""

    model_config = ConfigDict(extra="forbid")
    # Fields dropped silently: what a client echoes back from `session.created` (ids,
    # timestamps), and `parallel_tool_calls`, which both values already describe (a response
    # makes at most one call per step: "may call several" and "one at a time" both hold).
    ignored: ClassVar[frozenset[str]] = frozenset()
    # Protocol fields this server knows but does not implement (yet), wire name -> why: accepted
    # with a notice when set to anything but null (refusing them would throw away the rest of
    # the update), and left out of the effective session the server echoes back.
    noted: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _drop_ignored(cls, data: Any) -> Any:
        if isinstance(data, dict) and (cls.ignored or cls.noted):
            return {k: v for k, v in data.items() if k not in cls.ignored and k not in cls.noted}
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

    @classmethod
    def notices(cls, raw: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
        """(message, param) for each noted field `raw` sets, in this section and below (leaf
        models such as the transcription settings may note fields too)."""
        out = noted_fields(cls.noted, raw, prefix)
        for name, field in cls.model_fields.items():
            key = field.alias or name
            value = raw.get(key)
            if not isinstance(value, dict):
                continue
            sub = _section_type(field.annotation)
            if sub is not None:
                out += sub.notices(value, f"{prefix}.{key}")
            elif (leaf := _model_type(field.annotation)) is not None:
                out += noted_fields(getattr(leaf, "noted", {}), value, f"{prefix}.{key}")
        return out

    def warnings(self, raw: dict[str, Any]) -> list[tuple[str, str]]:
        """(message, param) for unknown fields accepted and ignored (Voice Live's convention)."""
        return []


def _model_type(annotation: Any) -> type[BaseModel] | None:
    """The model class a field holds (`Model | None`), or None for a plain value."""
    for arg in (annotation, *get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _section_type(annotation: Any) -> type[_Section] | None:
    """The section class a field holds, or None for a leaf field."""
    model = _model_type(annotation)
    return model if model is not None and issubclass(model, _Section) else None


_TRACING = "is set by the operator here (OpenTelemetry, one trace per turn)"


class _Extensions(_Section):
    """`session.voxserve`: VoxServe's own settings, in every dialect."""

    response_timing: Boolean = None
    knowledge: Boolean = None


Extensions = Annotated[_Extensions | None, NotNull]


class _GaAudioInput(_Section):
    input_format: GaFormat = Field(None, alias="format")
    transcription: InputTranscription | None = None
    turn_detection: TurnDetectionField = None
    noise_reduction: NoiseReductionField = None


class _GaAudioOutput(_Section):
    output_format: GaFormat = Field(None, alias="format")
    voice: Voice = None
    speed: Speed = None


class _GaAudio(_Section):
    input: _GaAudioInput | None = None
    output: _GaAudioOutput | None = None


class GaSessionUpdate(_Section):
    """GA's nested shape (`session.type` 'realtime')."""

    ignored = frozenset({"object", "id", "expires_at", "client_secret", "parallel_tool_calls"})
    noted = {"tracing": _TRACING,
             "reasoning": "has no effect: the served model does not reason"}
    prompt: StoredPrompt = None
    transcription_only: Annotated[bool | None, PlainValidator(_session_type)] = Field(
        None, alias="type")
    model: Name = None
    instructions: SessionInstructions = None
    audio_output: GaModalities = Field(None, alias="output_modalities")
    tools: Tools = None
    tool_choice: ToolChoiceField = None
    max_output_tokens: MaxTokens = None
    truncation: Annotated[TruncationConfig | None, PlainValidator(_truncation)] = None
    transcription_logprobs: Include = Field(None, alias="include")
    audio: _GaAudio | None = None
    voxserve: Extensions = None


class FlatSessionUpdate(_Section):
    """The flat shape of beta and Voice Live; Voice Live's own fields are in its subclass."""

    ignored = frozenset({"object", "id", "expires_at", "client_secret", "metadata",
                         "parallel_tool_calls", "input_audio_transcription_ignored",
                         "tool_choice_ignored"})
    noted = {"tracing": _TRACING}
    model: Name = None
    instructions: SessionInstructions = None
    audio_output: FlatModalities = Field(None, alias="modalities")
    voice: Voice = None
    input_format: FlatInputFormat = Field(None, alias="input_audio_format")
    output_format: FlatOutputFormat = Field(None, alias="output_audio_format")
    transcription: InputTranscription | None = Field(None, alias="input_audio_transcription")
    turn_detection: TurnDetectionField = None
    noise_reduction: NoiseReductionField = Field(None, alias="input_audio_noise_reduction")
    tools: Tools = None
    tool_choice: ToolChoiceField = None
    temperature: Temperature = None
    max_output_tokens: MaxTokens = Field(None, alias="max_response_output_tokens")
    transcription_logprobs: Include = Field(None, alias="include")
    voxserve: Extensions = None


class BetaSessionUpdate(FlatSessionUpdate):
    """Beta's flat shape: GA's output speed, at the top level."""

    speed: Speed = None


class VoiceLiveSessionUpdate(FlatSessionUpdate):
    """The flat shape with Voice Live's fields: each one below is Voice Live only."""

    # Voice Live: unknown fields get a warning. "ignore", not "allow": an extra named like a
    # field (`audio_output`, the name of `modalities`) would count as that field being set.
    model_config = ConfigDict(extra="ignore")
    noted = {**FlatSessionUpdate.noted,
             "reasoning_effort": "has no effect: the served model does not reason"}
    input_audio_sampling_rate: Literal[8000, 16000, 24000] | None = None  # Voice Live
    echo_cancellation: EchoCancellationField = Field(None,  # Voice Live
                                                     alias="input_audio_echo_cancellation")
    animation: AnimationField = None  # Voice Live
    interim_response: Interim = None  # Voice Live
    word_timestamps: TimestampTypes = Field(None,  # Voice Live
                                            alias="output_audio_timestamp_types")
    avatar: Annotated[None, _unavailable("avatar rendering")] = None  # Voice Live
    agent: Annotated[None, _unavailable("agent mode (a Foundry agent answering)")] = None

    def changes(self, current: SessionConfig) -> dict[str, Any]:
        out = super().changes(current)
        rate = self.input_audio_sampling_rate
        if rate is not None:  # applies to the format set here, or else to the current one
            encoding = out.get("input_format", current.input_format).encoding
            if encoding != "pcm16" and rate != 8000:
                raise _Refused(ErrorCode.INVALID_VALUE, "G.711 input is always 8000 Hz",
                               ("input_audio_sampling_rate",))
            out["input_format"] = AudioFormat(encoding, rate)
        echo = out.get("echo_cancellation", current.echo_cancellation)
        if echo is not None and echo.channels == 2 \
                and out.get("input_format", current.input_format).encoding != "pcm16":
            field = ("input_audio_echo_cancellation" if "echo_cancellation" in out
                     else "input_audio_format")
            raise _Refused(ErrorCode.INVALID_VALUE, "two-channel input (a client echo "
                           "reference) must be pcm16", (field,))
        return out

    def warnings(self, raw: dict[str, Any]) -> list[tuple[str, str]]:
        known = ({f.alias or name for name, f in type(self).model_fields.items()}
                 | self.ignored | set(self.noted))
        out = [(f"unknown parameter 'session.{key[:64]}' was ignored", f"session.{key[:64]}")
               for key in raw if key not in known]
        if PHRASES in (raw.get("include") or ()):
            out.append((f"'{PHRASES}' (recognized phrases) is not available on this server yet",
                        "session.include"))
        return out


class _Refused(ProtocolError):
    """A field refused after validation (by a rule across fields); `path` is its place in the
    payload, so that it alone is dropped."""

    def __init__(self, code: ErrorCode, message: str, path: tuple[str, ...]) -> None:
        super().__init__(code, message, "session." + ".".join(path))
        self.path = path


class UpdateResult(BaseModel):
    """What one `session.update` did: the new config, what it ignored, what it refused.

    `warnings` are fields accepted without effect: Voice Live clients get a `warning` each,
    the OpenAI dialects (whose clients do not know `warning`) see the effective value in the
    `session.updated` echo. `errors` are the fields refused, each dropped alone; the rest of
    the update took effect unless `applied` is false (nothing valid was left)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    config: SessionConfig
    warnings: list[tuple[str, str]] = Field(default_factory=list)  # (message, param)
    errors: list[ProtocolError] = Field(default_factory=list)
    applied: bool = True


_PAYLOADS: dict[Dialect, type[_Section]] = {
    Dialect.GA: GaSessionUpdate, Dialect.BETA: BetaSessionUpdate,
    Dialect.VOICE_LIVE: VoiceLiveSessionUpdate,
}


def apply_update(current: SessionConfig, raw: Any, dialect: Dialect,
                 voices: VoiceTable, audio_started: bool) -> UpdateResult:
    """`current` with the client's `session` applied field by field; `current` itself is never
    changed. A malformed field is refused alone (an error naming it) and the rest applies."""
    with no_stray_exceptions("session.update"):
        if not isinstance(raw, dict):
            raise ProtocolError(ErrorCode.INVALID_TYPE, "session must be an object", "session")
        model = _PAYLOADS[dialect]
        context = PayloadContext(dialect, voices)
        errors: list[ProtocolError] = []
        payload = raw
        # Each pass drops every field pydantic refused; a handful of passes covers a refusal
        # that only shows once another field is gone (a cross-field rule).
        for _ in range(_MAX_PASSES):
            try:
                update = model.model_validate(payload, context=context)
                changes = update.changes(current)
                break
            except ValidationError as exc:
                by_path: dict[tuple[str, ...], ProtocolError] = {}
                for err in exc.errors():  # one error per field (a union reports each branch)
                    by_path.setdefault(_field_path(model, err["loc"]), error_of(err, "session"))
                refused = [(err, path) for path, err in by_path.items()]
            except _Refused as exc:
                refused = [(exc, exc.path)]
            if any(not path for _, path in refused):
                raise refused[0][0]  # the payload as a whole is wrong
            errors += [err for err, _ in refused]
            for _, path in refused:
                payload = _without(payload, path)
        else:
            raise errors[0]
        voice_param = "session.audio.output.voice" if dialect is Dialect.GA else "session.voice"
        notices = model.notices(raw, "session") + update.warnings(raw)
        choice: VoiceChoice | None = changes.pop("voice", None)
        if choice is not None and audio_started and choice.name != current.voice:
            errors.append(ProtocolError(ErrorCode.INVALID_VALUE, "voice cannot change once the "
                                        "session has produced audio", voice_param))
        elif choice is not None:
            changes.update(voice=choice.name, voice_raw=choice.raw)
            notices += [(f"voice '{k}' has no effect with this server's voices; it was ignored",
                         f"{voice_param}.{k}") for k in VOICE_SETTINGS_WITHOUT_EFFECT
                        if (choice.raw or {}).get(k) is not None]
            if choice.speed is not None:
                changes["speed"] = choice.speed
            if choice.volume is not None:
                changes["volume"] = choice.volume
            if choice.requested is not None:
                notices.append((voices.fallback_notice(choice.requested), voice_param))
        # one message, a handful of events: not one per field
        notices = capped(notices, lambda n: (f"{n} more unknown or unsupported fields were "
                                             "ignored", "session"))
        code = errors[-1].code if errors else ErrorCode.INVALID_VALUE
        refusals = capped(errors, lambda n: ProtocolError(code, f"{n} more fields were refused",
                                                          "session"))
        config = current.model_copy(deep=True, update=changes).effective()
        return UpdateResult(config=config, warnings=notices, errors=refusals,
                            applied=bool(changes) or not errors)


_MAX_PASSES = 4


def _field_path(model: type[_Section], loc: tuple[Any, ...]) -> tuple[str, ...]:
    """The payload keys down to the refused field: into sections, and no further."""
    path: list[str] = []
    cls: type[_Section] | None = model
    for part in loc:
        if cls is None or not isinstance(part, str):
            break
        path.append(part)
        field = next((f for n, f in cls.model_fields.items() if (f.alias or n) == part), None)
        cls = _section_type(field.annotation) if field is not None else None
    return tuple(path)


def _without(payload: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """A copy of `payload` without the field at `path` (the client's dict is left alone)."""
    out = dict(payload)
    head, *rest = path
    if not rest:
        out.pop(head, None)
    elif isinstance(out.get(head), dict):
        out[head] = _without(out[head], tuple(rest))
    return out
