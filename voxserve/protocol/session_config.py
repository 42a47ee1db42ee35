"""The effective session configuration, `session.update` parsing and session rendering.

One internal `SessionConfig` serves every dialect. GA nests audio settings
(`audio.input.format`, `audio.output.voice`, `output_modalities`); beta and Voice Live are flat
(`input_audio_format`, `voice`, `modalities`). `apply_update` merges a client update into the
current config: an absent field is left alone, an explicit `null` clears it (so
`turn_detection: null` turns VAD off), and the whole update is refused if any field is bad.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxserve.audio.formats import AudioFormat
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode, ProtocolError

_STRICT = ConfigDict(extra="forbid")

TurnType = Literal[
    "server_vad", "semantic_vad", "azure_semantic_vad", "azure_semantic_vad_en",
    "azure_semantic_vad_multilingual",
]
_VOICE_LIVE_TURN_TYPES = {"azure_semantic_vad", "azure_semantic_vad_en",
                          "azure_semantic_vad_multilingual"}


class EndOfUtterance(BaseModel):  # Voice Live
    model_config = _STRICT
    model: str = "semantic_detection_v1"
    threshold_level: Literal["low", "medium", "high", "default"] = "default"
    timeout_ms: int = Field(1000, ge=0)


class TurnDetection(BaseModel):
    model_config = _STRICT
    type: TurnType = "server_vad"
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(300, ge=0, le=5000)
    silence_duration_ms: int = Field(500, ge=0, le=10000)
    idle_timeout_ms: int | None = Field(None, ge=0)
    create_response: bool = True
    interrupt_response: bool = True
    eagerness: Literal["low", "medium", "high", "auto"] | None = None  # GA semantic_vad
    # Voice Live extensions
    speech_duration_ms: int | None = Field(None, ge=80)
    remove_filler_words: bool | None = None
    languages: list[str] | None = None
    end_of_utterance_detection: EndOfUtterance | None = None
    auto_truncate: bool | None = None

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


class InputTranscription(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = "whisper-1"
    language: str | None = None
    prompt: str | None = None
    # Voice Live extensions; phrase_list biases Whisper through its initial prompt.
    phrase_list: list[str] | None = None
    custom_speech: dict[str, str] | None = None


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolChoiceFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    name: str


ToolChoice = Literal["auto", "none", "required"] | ToolChoiceFunction


class SessionConfig(BaseModel):
    """The effective session, dialect-neutral."""

    model: str = "voxserve-default"
    instructions: str = ""
    audio_output: bool = True  # modalities: audio (+text) vs text only
    voice: str = "alloy"
    voice_raw: Any = None  # the voice object as the client gave it (Voice Live), echoed back
    speed: float = 1.0
    input_format: AudioFormat = AudioFormat()
    output_format: AudioFormat = AudioFormat()
    transcription: InputTranscription | None = None
    turn_detection: TurnDetection | None = TurnDetection()
    tools: list[FunctionTool] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    temperature: float = 0.8
    max_output_tokens: int | Literal["inf"] = "inf"
    # VoxServe's own extension (opt-in, never by default: official clients must not see unknown
    # events): a `voxserve.response.timing` event after each `response.done`.
    response_timing: bool = False

    model_config = ConfigDict(arbitrary_types_allowed=True)


# ---------------------------------------------------------------------------------------------
# audio formats


def _ga_format(raw: Any, param: str) -> AudioFormat:
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_TYPE, f"{param} must be an object", param)
    kind = raw.get("type", "audio/pcm")
    if kind == "audio/pcm":
        rate = raw.get("rate", 24000)
        if rate != 24000:
            raise ProtocolError(ErrorCode.INVALID_VALUE,
                                f"audio/pcm rate must be 24000, got {rate!r}", f"{param}.rate")
        return AudioFormat("pcm16", 24000)
    if kind == "audio/pcmu":
        return AudioFormat("g711_ulaw", 8000)
    if kind == "audio/pcma":
        return AudioFormat("g711_alaw", 8000)
    raise ProtocolError(ErrorCode.INVALID_VALUE, f"unsupported audio format {kind!r}",
                        f"{param}.type")


def _render_ga_format(fmt: AudioFormat) -> dict[str, Any]:
    if fmt.encoding == "g711_ulaw":
        return {"type": "audio/pcmu"}
    if fmt.encoding == "g711_alaw":
        return {"type": "audio/pcma"}
    return {"type": "audio/pcm", "rate": 24000}


_FLAT_OUTPUT_FORMATS = {
    "pcm16": AudioFormat("pcm16", 24000),
    "g711_ulaw": AudioFormat("g711_ulaw", 8000),
    "g711_alaw": AudioFormat("g711_alaw", 8000),
}
_VL_OUTPUT_FORMATS = {
    **_FLAT_OUTPUT_FORMATS,
    "pcm16_8000hz": AudioFormat("pcm16", 8000),
    "pcm16_16000hz": AudioFormat("pcm16", 16000),
}


def flat_format_name(fmt: AudioFormat, output: bool) -> str:
    if fmt.encoding != "pcm16":
        return fmt.encoding
    if output and fmt.rate != 24000:
        return f"pcm16_{fmt.rate}hz"
    return "pcm16"


# ---------------------------------------------------------------------------------------------
# update parsing


def _validated(model: type[BaseModel], raw: Any, param: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, param) from None


def validation_error(exc: ValidationError, prefix: str) -> ProtocolError:
    """The first pydantic error as a protocol error naming the offending parameter."""
    err = exc.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
    param = f"{prefix}{loc}"
    kind = err["type"]
    if kind == "missing":
        code = ErrorCode.MISSING_REQUIRED_PARAMETER
        message = f"missing required parameter '{param}'"
    elif kind == "extra_forbidden":
        code = ErrorCode.UNKNOWN_PARAMETER
        message = f"unknown parameter '{param}'"
    elif kind.endswith(("_type", "_parsing")):
        code = ErrorCode.INVALID_TYPE
        message = f"invalid type for '{param}': {err['msg']}"
    else:
        code = ErrorCode.INVALID_VALUE
        message = f"invalid value for '{param}': {err['msg']}"
    return ProtocolError(code, message, param)


def _turn_detection(raw: Any, param: str, dialect: Dialect) -> TurnDetection | None:
    if raw is None:
        return None
    td: TurnDetection = _validated(TurnDetection, raw, param)
    if dialect is Dialect.VOICE_LIVE and td.type == "semantic_vad":
        raise ProtocolError(ErrorCode.INVALID_VALUE,
                            "semantic_vad is an OpenAI type; Voice Live uses azure_semantic_vad",
                            f"{param}.type")
    if dialect is not Dialect.VOICE_LIVE and td.type in _VOICE_LIVE_TURN_TYPES:
        raise ProtocolError(ErrorCode.INVALID_VALUE,
                            f"{td.type} is only available on the Voice Live endpoint",
                            f"{param}.type")
    return td


def _transcription(raw: Any, param: str) -> InputTranscription | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_TYPE, f"{param} must be an object or null", param)
    return _validated(InputTranscription, raw, param)


def parse_tools(raw: Any, param: str) -> list[FunctionTool]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ProtocolError(ErrorCode.INVALID_TYPE, f"{param} must be an array", param)
    tools = [_validated(FunctionTool, t, f"{param}[{i}]") for i, t in enumerate(raw)]
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise ProtocolError(ErrorCode.INVALID_VALUE, "tool names must be unique", param)
    return tools


def parse_tool_choice(raw: Any, param: str) -> ToolChoice:
    if raw in ("auto", "none", "required"):
        return raw  # type: ignore[no-any-return]
    if isinstance(raw, dict):
        return _validated(ToolChoiceFunction, raw, param)  # type: ignore[no-any-return]
    raise ProtocolError(ErrorCode.INVALID_VALUE,
                        "tool_choice must be auto, none, required or {type: function, name}", param)


def parse_max_tokens(raw: Any, param: str) -> int | Literal["inf"]:
    if raw == "inf" or raw is None:
        return "inf"
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ProtocolError(ErrorCode.INVALID_TYPE, f"{param} must be an integer or 'inf'", param)
    if not 1 <= raw <= 4096:
        raise ProtocolError(ErrorCode.INVALID_VALUE, f"{param} must be between 1 and 4096", param)
    return raw


def _str(raw: Any, param: str, allow_none: bool = False) -> str:
    if raw is None and allow_none:
        return ""
    if not isinstance(raw, str):
        raise ProtocolError(ErrorCode.INVALID_TYPE, f"{param} must be a string", param)
    return raw


def _number(raw: Any, param: str, lo: float, hi: float) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ProtocolError(ErrorCode.INVALID_TYPE, f"{param} must be a number", param)
    if not lo <= raw <= hi:
        raise ProtocolError(ErrorCode.INVALID_VALUE, f"{param} must be between {lo} and {hi}", param)
    return float(raw)


def _dict(raw: Any, param: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_TYPE, f"{param} must be an object", param)
    return raw


class VoiceTable:
    """Maps client voice names onto the TTS engine's speakers (configurable in options)."""

    def __init__(self, table: dict[str, str]) -> None:
        self._table = {k.lower(): v for k, v in table.items()}

    def resolve(self, name: str, param: str = "session.voice") -> str:
        speaker = self._table.get(name.lower())
        if speaker is None:
            known = ", ".join(sorted(self._table))
            raise ProtocolError(ErrorCode.INVALID_VALUE,
                                f"voice {name!r} is not available; choose one of: {known}", param)
        return speaker

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._table


def _voice_name(raw: Any, param: str, dialect: Dialect) -> str:
    """A bare string in every dialect; GA also `{id}`; Voice Live also its voice objects."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        if dialect is Dialect.GA and isinstance(raw.get("id"), str):
            return str(raw["id"])
        if dialect is Dialect.VOICE_LIVE:
            name = raw.get("name") or raw.get("model")
            if isinstance(name, str):
                return name
            raise ProtocolError(ErrorCode.MISSING_REQUIRED_PARAMETER,
                                "voice object needs a 'name'", f"{param}.name")
    raise ProtocolError(ErrorCode.INVALID_TYPE, f"{param} must be a voice name", param)


class UpdateResult(BaseModel):
    config: SessionConfig
    warnings: list[tuple[str, str]] = Field(default_factory=list)  # (message, param)


# Fields that are part of the protocol but have no effect here yet. GA refuses them when set
# (the client should know); Voice Live gets a warning, its convention for non-fatal notices.
_GA_IGNORED_OK = {"tracing", "truncation", "prompt", "include", "parallel_tool_calls",
                  "object", "id", "expires_at", "client_secret"}
_FLAT_IGNORED_OK = {"parallel_tool_calls", "object", "id", "expires_at", "include", "metadata",
                    "input_audio_transcription_ignored", "tool_choice_ignored"}
_VL_UNSUPPORTED = {"input_audio_noise_reduction", "input_audio_echo_cancellation", "animation",
                   "output_audio_timestamp_types", "interim_response", "reasoning_effort",
                   "agent"}


def apply_update(current: SessionConfig, raw: Any, dialect: Dialect,
                 voices: VoiceTable, audio_started: bool) -> UpdateResult:
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_TYPE, "session must be an object", "session")
    parse = _apply_ga if dialect is Dialect.GA else _apply_flat
    return parse(current.model_copy(deep=True), raw, dialect, voices, audio_started)


def _apply_extensions(cfg: SessionConfig, raw: Any) -> None:
    """`session.voxserve = {response_timing: bool}`: our extension settings, in every dialect."""
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.INVALID_TYPE, "session.voxserve must be an object",
                            "session.voxserve")
    for key, value in raw.items():
        if key != "response_timing":
            raise ProtocolError(ErrorCode.UNKNOWN_PARAMETER,
                                f"unknown parameter 'session.voxserve.{key}'", f"session.voxserve.{key}")
        if not isinstance(value, bool):
            raise ProtocolError(ErrorCode.INVALID_TYPE, "response_timing must be a boolean",
                                "session.voxserve.response_timing")
        cfg.response_timing = value


def _set_voice(cfg: SessionConfig, raw: Any, param: str, dialect: Dialect, voices: VoiceTable,
               audio_started: bool) -> None:
    name = _voice_name(raw, param, dialect)
    voices.resolve(name, param)
    if audio_started and name != cfg.voice:
        raise ProtocolError(ErrorCode.INVALID_VALUE,
                            "voice cannot change once the session has produced audio", param)
    cfg.voice = name
    cfg.voice_raw = raw if isinstance(raw, dict) else None


def _apply_ga(cfg: SessionConfig, raw: dict[str, Any], dialect: Dialect, voices: VoiceTable,
              audio_started: bool) -> UpdateResult:
    warnings: list[tuple[str, str]] = []
    kind = raw.get("type", "realtime")
    if kind != "realtime":
        raise ProtocolError(ErrorCode.INVALID_VALUE,
                            "only realtime sessions are served here (session.type='realtime')",
                            "session.type")
    handlers = {
        "type": lambda v: None,
        "model": lambda v: setattr(cfg, "model", _str(v, "session.model")),
        "instructions": lambda v: setattr(cfg, "instructions",
                                          _str(v, "session.instructions", allow_none=True)),
        "output_modalities": lambda v: setattr(cfg, "audio_output", _ga_modalities(v)),
        "tools": lambda v: setattr(cfg, "tools", parse_tools(v, "session.tools")),
        "tool_choice": lambda v: setattr(cfg, "tool_choice",
                                         parse_tool_choice(v, "session.tool_choice")),
        "max_output_tokens": lambda v: setattr(cfg, "max_output_tokens",
                                               parse_max_tokens(v, "session.max_output_tokens")),
        "audio": lambda v: _apply_ga_audio(cfg, _dict(v, "session.audio"), voices,
                                           audio_started),
        "voxserve": lambda v: _apply_extensions(cfg, v),
    }
    for key, value in raw.items():
        if key in handlers:
            handlers[key](value)
        elif key in _GA_IGNORED_OK:
            continue
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_PARAMETER, f"unknown parameter 'session.{key}'",
                                f"session.{key}")
    return UpdateResult(config=cfg, warnings=warnings)


def _ga_modalities(raw: Any) -> bool:
    if raw == ["audio"]:
        return True
    if raw == ["text"]:
        return False
    raise ProtocolError(ErrorCode.INVALID_VALUE,
                        "output_modalities must be ['audio'] or ['text']", "session.output_modalities")


def _apply_ga_audio(cfg: SessionConfig, audio: dict[str, Any], voices: VoiceTable,
                    audio_started: bool) -> None:
    for key in audio:
        if key not in ("input", "output"):
            raise ProtocolError(ErrorCode.UNKNOWN_PARAMETER, f"unknown parameter 'session.audio.{key}'",
                                f"session.audio.{key}")
    inp = _dict(audio.get("input"), "session.audio.input")
    for key, value in inp.items():
        param = f"session.audio.input.{key}"
        if key == "format":
            cfg.input_format = _ga_format(value, param)
        elif key == "transcription":
            cfg.transcription = _transcription(value, param)
        elif key == "turn_detection":
            cfg.turn_detection = _turn_detection(value, param, Dialect.GA)
        elif key == "noise_reduction":
            if value is not None:
                raise ProtocolError(ErrorCode.INVALID_VALUE,
                                    "noise reduction is not available on this server yet", param)
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_PARAMETER, f"unknown parameter '{param}'", param)
    out = _dict(audio.get("output"), "session.audio.output")
    for key, value in out.items():
        param = f"session.audio.output.{key}"
        if key == "format":
            cfg.output_format = _ga_format(value, param)
        elif key == "voice":
            _set_voice(cfg, value, param, Dialect.GA, voices, audio_started)
        elif key == "speed":
            cfg.speed = _number(value, param, 0.25, 1.5)
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_PARAMETER, f"unknown parameter '{param}'", param)


def _flat_modalities(raw: Any, dialect: Dialect) -> bool:
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        raise ProtocolError(ErrorCode.INVALID_TYPE, "modalities must be an array of strings",
                            "session.modalities")
    allowed = {"text", "audio"} | ({"animation", "avatar"} if dialect is Dialect.VOICE_LIVE else set())
    bad = [m for m in raw if m not in allowed]
    if bad or "text" not in raw:
        raise ProtocolError(ErrorCode.INVALID_VALUE,
                            "modalities must be ['text'] or ['text', 'audio']", "session.modalities")
    return "audio" in raw


def _apply_flat(cfg: SessionConfig, raw: dict[str, Any], dialect: Dialect, voices: VoiceTable,
                audio_started: bool) -> UpdateResult:
    warnings: list[tuple[str, str]] = []
    vl = dialect is Dialect.VOICE_LIVE
    input_rate = raw.get("input_audio_sampling_rate") if vl else None
    for key, value in raw.items():
        param = f"session.{key}"
        if key == "model":
            cfg.model = _str(value, param)
        elif key == "instructions":
            cfg.instructions = _str(value, param, allow_none=True)
        elif key == "modalities":
            cfg.audio_output = _flat_modalities(value, dialect)
        elif key == "voice":
            _set_voice(cfg, value, param, dialect, voices, audio_started)
        elif key == "input_audio_format":
            if value not in _FLAT_OUTPUT_FORMATS:
                raise ProtocolError(ErrorCode.INVALID_VALUE,
                                    f"input_audio_format must be one of {sorted(_FLAT_OUTPUT_FORMATS)}",
                                    param)
            cfg.input_format = _FLAT_OUTPUT_FORMATS[value]
        elif key == "input_audio_sampling_rate" and vl:
            continue  # applied below, after the format
        elif key == "output_audio_format":
            table = _VL_OUTPUT_FORMATS if vl else _FLAT_OUTPUT_FORMATS
            if value not in table:
                raise ProtocolError(ErrorCode.INVALID_VALUE,
                                    f"output_audio_format must be one of {sorted(table)}", param)
            cfg.output_format = table[value]
        elif key == "input_audio_transcription":
            cfg.transcription = _transcription(value, param)
        elif key == "turn_detection":
            cfg.turn_detection = _turn_detection(value, param, dialect)
        elif key == "tools":
            cfg.tools = parse_tools(value, param)
        elif key == "tool_choice":
            cfg.tool_choice = parse_tool_choice(value, param)
        elif key == "temperature":
            cfg.temperature = _number(value, param, 0.0, 2.0)
        elif key == "max_response_output_tokens":
            cfg.max_output_tokens = parse_max_tokens(value, param)
        elif key == "voxserve":
            _apply_extensions(cfg, value)
        elif key in _FLAT_IGNORED_OK:
            continue
        elif vl and key == "avatar":
            if value is not None:
                raise ProtocolError(ErrorCode.INVALID_VALUE,
                                    "avatar rendering is not available on this server", param)
        elif vl and key in _VL_UNSUPPORTED:
            if value is not None:
                warnings.append((f"'{key}' is not supported by this server yet and was ignored",
                                 param))
        elif vl:
            # Voice Live's convention for unknown fields is a non-fatal warning.
            warnings.append((f"unknown parameter '{param}' was ignored", param))
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_PARAMETER, f"unknown parameter '{param}'", param)
    if input_rate is not None:
        if input_rate not in (8000, 16000, 24000):
            raise ProtocolError(ErrorCode.INVALID_VALUE,
                                "input_audio_sampling_rate must be 8000, 16000 or 24000",
                                "session.input_audio_sampling_rate")
        if cfg.input_format.encoding != "pcm16" and input_rate != 8000:
            raise ProtocolError(ErrorCode.INVALID_VALUE, "G.711 input is always 8000 Hz",
                                "session.input_audio_sampling_rate")
        cfg.input_format = AudioFormat(cfg.input_format.encoding, input_rate)
    return UpdateResult(config=cfg, warnings=warnings)


# ---------------------------------------------------------------------------------------------
# rendering


def render_tool_choice(choice: ToolChoice) -> Any:
    return choice.model_dump() if isinstance(choice, BaseModel) else choice


def render_session(cfg: SessionConfig, dialect: Dialect, session_id: str,
                   expires_at: int) -> dict[str, Any]:
    tools = [t.model_dump() for t in cfg.tools]
    turn = cfg.turn_detection.render(dialect) if cfg.turn_detection else None
    transcription = (cfg.transcription.model_dump(exclude_none=True)
                     if cfg.transcription else None)
    if dialect is Dialect.GA:
        if transcription is not None:
            transcription = {k: v for k, v in transcription.items()
                             if k in ("model", "language", "prompt")}
        return {
            "type": "realtime", "id": session_id, "object": "realtime.session",
            "model": cfg.model, "output_modalities": ["audio"] if cfg.audio_output else ["text"],
            "instructions": cfg.instructions, "tools": tools,
            "tool_choice": render_tool_choice(cfg.tool_choice),
            "max_output_tokens": cfg.max_output_tokens, "expires_at": expires_at,
            "audio": {
                "input": {"format": _render_ga_format(cfg.input_format), "noise_reduction": None,
                          "transcription": transcription, "turn_detection": turn},
                "output": {"format": _render_ga_format(cfg.output_format), "voice": cfg.voice,
                           "speed": cfg.speed},
            },
        }
    session: dict[str, Any] = {
        "id": session_id, "object": "realtime.session", "model": cfg.model,
        "modalities": ["text", "audio"] if cfg.audio_output else ["text"],
        "instructions": cfg.instructions,
        "voice": cfg.voice_raw if cfg.voice_raw is not None else cfg.voice,
        "input_audio_format": flat_format_name(cfg.input_format, output=False),
        "output_audio_format": flat_format_name(cfg.output_format, output=True),
        "input_audio_transcription": transcription, "turn_detection": turn, "tools": tools,
        "tool_choice": render_tool_choice(cfg.tool_choice), "temperature": cfg.temperature,
        "max_response_output_tokens": cfg.max_output_tokens, "expires_at": expires_at,
    }
    if dialect is Dialect.VOICE_LIVE:
        session["input_audio_sampling_rate"] = cfg.input_format.rate
    if dialect is Dialect.BETA:
        session["voice"] = cfg.voice
    return session
