"""The effective session configuration and its parts, dialect-neutral.

These are what a session runs on, whichever dialect set them: `session_update` builds them from
a client's `session.update`, `session_config` renders them back for each dialect.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

from jsonschema import Draft202012Validator, SchemaError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from voxserve.audio.formats import AudioFormat
from voxserve.languages import UnknownLanguage, normalise_all
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.validation import (
    MAX_NAME_CHARS, MAX_PHRASES, MAX_TOOL_DESCRIPTION_CHARS, MAX_TOOL_SCHEMA_CHARS,
    MAX_TRANSCRIPTION_PROMPT_CHARS, refuse,
)

_STRICT = ConfigDict(extra="forbid")
# Timeouts are capped at an hour, past any session's life, so that no timer overflows.
_HOUR_MS = 3_600_000

TurnType = Literal[
    "server_vad", "semantic_vad", "azure_semantic_vad", "azure_semantic_vad_en",
    "azure_semantic_vad_multilingual",
]
# TurnDetection's Voice Live extensions: unknown parameters in the OpenAI dialects
VOICE_LIVE_TURN_FIELDS = ("speech_duration_ms", "remove_filler_words", "languages",
                          "end_of_utterance_detection", "auto_truncate")
VOICE_LIVE_TURN_TYPES = frozenset({"azure_semantic_vad", "azure_semantic_vad_en",
                                   "azure_semantic_vad_multilingual"})


NoiseReduction = Literal["near_field", "far_field", "azure_deep_noise_suppression"]
# the OpenAI dialects' types; azure_deep_noise_suppression is Voice Live's
OPENAI_NOISE_TYPES = frozenset({"near_field", "far_field"})


class NoiseReductionSetting(BaseModel):
    """The wire shape of GA `audio.input.noise_reduction`, beta and Voice Live
    `input_audio_noise_reduction`; the session keeps only its type."""

    model_config = _STRICT
    type: NoiseReduction


class EchoCancellation(BaseModel):  # Voice Live `input_audio_echo_cancellation`
    model_config = _STRICT
    type: Literal["server_echo_cancellation"]
    # server: the server's own output is the reference; client: channel 1 of stereo input is
    reference_source: Literal["server", "client"] = "server"
    channels: Literal[1, 2] = 1

    @model_validator(mode="after")
    def _reference_matches_channels(self) -> EchoCancellation:
        if (self.channels == 2) != (self.reference_source == "client"):
            at = ".channels" if self.channels == 2 else ".reference_source"
            raise refuse(ErrorCode.INVALID_VALUE, "the client reference is channel 1 of stereo "
                         "input: reference_source 'client' goes with channels 2, 'server' with 1",
                         at)
        return self


AnimationOutput = Literal["blendshapes", "viseme_id"]


class Animation(BaseModel):  # Voice Live `animation`
    """Which animation streams ride on the spoken audio (models/visemes.py, blendshapes.py).
    `model_name` is echoed: there is one animation model here."""

    model_config = _STRICT
    model_name: str | None = Field(None, max_length=MAX_NAME_CHARS)
    outputs: list[AnimationOutput] = Field(default_factory=list, max_length=2)


InterimTrigger = Literal["latency", "tool"]
INTERIM_TRIGGERS: tuple[InterimTrigger, ...] = ("latency", "tool")


class InterimResponse(BaseModel):  # Voice Live `interim_response`
    """Filler speech while the answer is slow (`latency`: no audio within the threshold) or a
    tool runs (`tool`). Static texts only: an LLM filler would queue on the one LLM slot the
    answer is waiting for (on the CPU default), so `llm_interim_response` is refused."""

    model_config = _STRICT
    type: Literal["static_interim_response"]
    triggers: list[InterimTrigger] = Field(default_factory=lambda: list(INTERIM_TRIGGERS),
                                           max_length=2)
    latency_threshold_ms: int = Field(2000, ge=0, le=60_000)
    texts: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=20)


class EndOfUtterance(BaseModel):  # Voice Live
    model_config = _STRICT
    model: Literal["semantic_detection_v1", "semantic_detection_v1_en",
                   "semantic_detection_v1_multilingual"] = "semantic_detection_v1"
    threshold_level: Literal["low", "medium", "high", "default"] = "default"
    timeout_ms: int = Field(1000, ge=0, le=_HOUR_MS)

    @model_validator(mode="before")
    @classmethod
    def _how_to_shape(cls, data: Any) -> Any:
        """Azure's how-to sends `threshold` (0-1) and `timeout` (seconds), the SDK
        `threshold_level` and `timeout_ms`: both mean the same settings."""
        if not isinstance(data, dict) or not ({"threshold", "timeout"} & data.keys()):
            return data
        data = dict(data)
        threshold, timeout = data.pop("threshold", None), data.pop("timeout", None)
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                    or not 0 <= threshold <= 1:
                raise refuse(ErrorCode.INVALID_VALUE, "threshold must be a number from 0 to 1",
                             ".threshold")
            data.setdefault("threshold_level", "low" if threshold < 1 / 3 else
                            "medium" if threshold < 2 / 3 else "high")
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                    or not 0 <= timeout <= _HOUR_MS / 1000:
                raise refuse(ErrorCode.INVALID_VALUE, "timeout is in seconds, at most an hour",
                             ".timeout")
            data.setdefault("timeout_ms", round(timeout * 1000))
        return data


class TurnDetection(BaseModel):
    model_config = _STRICT
    type: TurnType = "server_vad"
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(300, ge=0, le=5000)
    silence_duration_ms: int = Field(500, ge=0, le=10000)
    idle_timeout_ms: int | None = Field(None, ge=0, le=_HOUR_MS)
    create_response: bool = True
    interrupt_response: bool = True
    eagerness: Literal["low", "medium", "high", "auto"] | None = None  # GA semantic_vad
    # Voice Live extensions
    speech_duration_ms: int | None = Field(None, ge=80, le=_HOUR_MS)
    remove_filler_words: bool | None = None
    languages: list[str] | None = Field(None, max_length=MAX_PHRASES)
    end_of_utterance_detection: EndOfUtterance | None = None
    auto_truncate: bool | None = None

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, tags: list[str] | None) -> list[str] | None:
        return _known_languages(tags)

    def render(self, dialect: Dialect) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True)
        if self.type == "semantic_vad":
            keep = {"type", "eagerness", "create_response", "interrupt_response"}
            data = {k: v for k, v in data.items() if k in keep}
            data.setdefault("eagerness", "auto")
        elif dialect is Dialect.GA or self.type == "server_vad" and dialect is Dialect.BETA:
            data = {k: v for k, v in data.items() if k in _OPENAI_SERVER_VAD_FIELDS}
        return data


_OPENAI_SERVER_VAD_FIELDS = {"type", "threshold", "prefix_padding_ms", "silence_duration_ms",
                             "idle_timeout_ms", "create_response", "interrupt_response"}


def _known_languages(tags: str | list[str] | None) -> Any:
    """Each tag must name a language the recognizer knows; the client's spelling is kept (it is
    echoed back) and `voxserve.languages` reduces it again for each decode."""
    if tags is not None:
        try:
            normalise_all(tags)
        except UnknownLanguage as exc:
            raise refuse(ErrorCode.INVALID_VALUE, str(exc)) from None
    return tags


class InputTranscription(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # kept and echoed, but without effect on this server's recognizer: a notice when set
    noted: ClassVar[dict[str, str]] = {
        "delay": "has no effect: Whisper decodes the whole turn at its end",
        "custom_speech": "has no effect: no custom speech models are configured here"}
    # routed by the operator's `asr.transcription_models`; an unknown name gets the default ASR
    model: str | None = Field("whisper-1", max_length=MAX_NAME_CHARS)
    # ISO 639-1/2/3 or BCP-47; Voice Live also a comma list to detect among ("en-US,es-MX")
    language: str | None = Field(None, max_length=MAX_NAME_CHARS)
    prompt: str | None = Field(None, max_length=MAX_TRANSCRIPTION_PROMPT_CHARS)
    # GA: the candidates to detect among, and words to favour (as phrase_list)
    languages: list[str] | None = Field(None, max_length=MAX_PHRASES)
    keywords: list[str] | None = Field(None, max_length=MAX_PHRASES)
    # GA: latency/accuracy trade of gpt-realtime-whisper; accepted, no effect on Whisper
    delay: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None
    # Voice Live extensions; phrase_list biases Whisper (faster-whisper hotwords).
    phrase_list: list[str] | None = Field(None, max_length=MAX_PHRASES)
    custom_speech: dict[str, str] | None = Field(None, max_length=MAX_PHRASES)

    @model_validator(mode="after")
    def _without_effect(self) -> InputTranscription:
        """The noted settings are checked, then left out: the echo shows what is in effect."""
        for key in self.noted:
            setattr(self, key, None)
        return self

    @field_validator("phrase_list", "keywords")
    @classmethod
    def _short_phrases(cls, phrases: list[str] | None) -> list[str] | None:
        if phrases and max(len(p) for p in phrases) > MAX_NAME_CHARS:
            raise refuse(ErrorCode.INVALID_VALUE,
                         f"each phrase must have at most {MAX_NAME_CHARS} characters")
        return phrases

    @field_validator("language", "languages")
    @classmethod
    def _known_languages(cls, tags: str | list[str] | None) -> Any:
        return _known_languages(tags)


class TruncationConfig(BaseModel):
    """GA `truncation`: "auto" (the oldest history goes when the context is full), "disabled",
    or `retention_ratio` (cut deeper, to that share, optionally under a token limit)."""

    model_config = _STRICT
    type: Literal["auto", "disabled", "retention_ratio"] = "auto"
    retention_ratio: float | None = Field(None, gt=0.0, le=1.0)
    post_instructions_tokens: int | None = Field(None, ge=1, le=10_000_000)

    def render(self) -> Any:
        if self.type != "retention_ratio":
            return self.type
        out: dict[str, Any] = {"type": "retention_ratio", "retention_ratio": self.retention_ratio}
        if self.post_instructions_tokens is not None:
            out["token_limits"] = {"post_instructions": self.post_instructions_tokens}
        return out


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str = Field("", max_length=MAX_TOOL_DESCRIPTION_CHARS)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        # the constrained answer's spoken branch is {"type": "message", ...} (models/tool_schema.py)
        if name == "message":
            raise refuse(ErrorCode.INVALID_VALUE, '"message" is reserved for the spoken answer; '
                         "rename the function")
        return name

    @field_validator("parameters")
    @classmethod
    def _bounded_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(schema, separators=(",", ":"), default=str))
        if size > MAX_TOOL_SCHEMA_CHARS:
            raise refuse(ErrorCode.INVALID_VALUE, f"the schema is {size} characters of JSON; at "
                         f"most {MAX_TOOL_SCHEMA_CHARS} are accepted")
        # Checked here so a bad schema is the client's error now, not a failed response later
        # (or a call decoded against a schema that means nothing).
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.path) or "the schema"
            raise refuse(ErrorCode.INVALID_VALUE, f"not a valid JSON schema at {where}: "
                         f"{exc.message[:200]}") from None
        if schema.get("type", "object") != "object":
            raise refuse(ErrorCode.INVALID_VALUE, 'a function\'s parameters must be a schema of '
                         '"type": "object"')
        return schema


class ToolChoiceFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    name: str = Field(max_length=64)


ToolChoice = Literal["auto", "none", "required"] | ToolChoiceFunction


class SessionConfig(BaseModel):
    """The effective session, dialect-neutral."""

    model: str = "voxserve-default"
    instructions: str = ""
    audio_output: bool = True  # modalities: audio (+text) vs text only
    voice: str = "alloy"
    voice_raw: Any = None  # the voice object as the client gave it (Voice Live), echoed back
    speed: float = 1.0
    volume: float = 1.0  # a gain on the spoken output (Voice Live voice `volume`)
    input_format: AudioFormat = AudioFormat()
    output_format: AudioFormat = AudioFormat()
    transcription: InputTranscription | None = None
    turn_detection: TurnDetection | None = TurnDetection()
    tools: list[FunctionTool] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    temperature: float = 0.8
    max_output_tokens: int | Literal["inf"] = "inf"
    truncation: TruncationConfig = TruncationConfig()
    # VoxServe's own extension (opt-in, never by default: official clients must not see unknown
    # events): a `voxserve.response.timing` event after each `response.done`.
    response_timing: bool = False
    # `session.voxserve.knowledge`: whether the server's `search_knowledge` tool (VoiceRAG, when
    # the operator configured documents) is offered in this session; None: the operator's default
    knowledge: bool | None = None
    # A transcription session (GA `type: "transcription"`, `?intent=transcription`, beta
    # `transcription_session.update`): VAD and ASR only, never a response.
    transcription_only: bool = False
    # `include: ["item.input_audio_transcription.logprobs"]`: per-word log probabilities
    transcription_logprobs: bool = False
    # the audio front end (voxserve/audio/front_end.py), before VAD, Smart Turn and ASR
    noise_reduction: NoiseReduction | None = None
    echo_cancellation: EchoCancellation | None = None
    # Voice Live: what rides on the spoken audio (voxserve/session/speech_marks.py)
    animation: Animation | None = None
    word_timestamps: bool = False  # `output_audio_timestamp_types: ["word"]`
    interim_response: InterimResponse | None = None  # Voice Live: filler while the answer is slow

    def effective(self) -> SessionConfig:
        """The config as the session runs it: a transcription session always transcribes and
        its turn detection never creates a response."""
        if not self.transcription_only:
            return self
        td = self.turn_detection
        return self.model_copy(update={
            "transcription": self.transcription or InputTranscription(),
            "turn_detection": td.model_copy(update={"create_response": False,
                                                    "interrupt_response": False}) if td else None})

    model_config = ConfigDict(arbitrary_types_allowed=True)


class VoiceTable:
    """Maps client voice names onto the TTS engine's speakers (configurable in options).

    A name the table does not know is refused when `strict`; otherwise the session speaks with
    the `default` voice and the client is told (a migrating app keeps working with its Azure or
    custom voice name, in our voice)."""

    def __init__(self, table: dict[str, str], default: str | None = None,
                 strict: bool = True) -> None:
        self._table = {k.lower(): v for k, v in table.items()}
        self.default = default if default is not None else next(iter(table), "")
        self.strict = strict

    def resolve(self, name: str, param: str = "session.voice") -> str:
        speaker = self._table.get(name.lower())
        if speaker is None:
            raise ProtocolError(ErrorCode.INVALID_VALUE, self.unknown(name), param)
        return speaker

    def unknown(self, name: str) -> str:
        """The message for a voice that is not in the table."""
        known = ", ".join(sorted(self._table))
        return f"voice {name[:MAX_NAME_CHARS]!r} is not available; choose one of: {known}"

    def fallback_notice(self, name: str) -> str:
        """The warning for a voice spoken with the default instead."""
        return (f"voice {name[:MAX_NAME_CHARS]!r} is not served here; the session speaks with "
                f"{self.default!r} instead")

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._table
