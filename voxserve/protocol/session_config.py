"""The session configuration as the rest of VoxServe imports it, and its rendering per dialect.

The models live in `session_models`, `session.update` parsing in `session_update` and the
validators both share with `response.create` in `fields`; they are re-exported here so that
callers need one import. `render_session` is the `session` object of `session.created` /
`session.updated`: GA nests audio settings, beta and Voice Live are flat.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from voxserve.audio.formats import AudioFormat
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.fields import LOGPROBS
from voxserve.protocol.session_models import (
    VOICE_LIVE_TURN_TYPES, EndOfUtterance, FunctionTool, InputTranscription, SessionConfig,
    ToolChoice, ToolChoiceFunction, TurnDetection, TurnType, VoiceTable,
)
from voxserve.protocol.session_update import UpdateResult, apply_update
from voxserve.protocol.validation import validation_error

__all__ = [
    "VOICE_LIVE_TURN_TYPES", "EndOfUtterance", "FunctionTool", "InputTranscription",
    "SessionConfig", "ToolChoice", "ToolChoiceFunction", "TurnDetection", "TurnType",
    "UpdateResult", "VoiceTable", "apply_update", "flat_format_name", "render_session",
    "render_transcription_session",
    "render_tool_choice", "validation_error",
]


def flat_format_name(fmt: AudioFormat, output: bool) -> str:
    """The beta / Voice Live name of a format (`pcm16_8000hz` only exists for Voice Live output)."""
    if fmt.encoding != "pcm16":
        return fmt.encoding
    if output and fmt.rate != 24000:
        return f"pcm16_{fmt.rate}hz"
    return "pcm16"


def _render_ga_format(fmt: AudioFormat) -> dict[str, Any]:
    if fmt.encoding == "g711_ulaw":
        return {"type": "audio/pcmu"}
    if fmt.encoding == "g711_alaw":
        return {"type": "audio/pcma"}
    return {"type": "audio/pcm", "rate": 24000}


def _noise_reduction(cfg: SessionConfig) -> dict[str, Any] | None:
    return {"type": cfg.noise_reduction} if cfg.noise_reduction else None


def render_tool_choice(choice: ToolChoice) -> Any:
    return choice.model_dump() if isinstance(choice, BaseModel) else choice


def render_transcription_session(cfg: SessionConfig, session_id: str,
                                 expires_at: int) -> dict[str, Any]:
    """Beta's `transcription_session` object (`transcription_session.updated`). Its client
    secret is the shape the type requires; this server mints none, so the value is empty."""
    transcription = (cfg.transcription.model_dump(exclude_none=True, include={"model", "language",
                                                                              "prompt"})
                     if cfg.transcription else None)
    return {"id": session_id, "object": "realtime.transcription_session",
            "client_secret": {"value": "", "expires_at": expires_at},
            "modalities": ["text"], "input_audio_format": flat_format_name(cfg.input_format, False),
            "input_audio_transcription": transcription,
            "turn_detection": cfg.turn_detection.render(Dialect.BETA) if cfg.turn_detection
            else None}


def render_session(cfg: SessionConfig, dialect: Dialect, session_id: str,
                   expires_at: int) -> dict[str, Any]:
    tools = [t.model_dump() for t in cfg.tools]
    turn = cfg.turn_detection.render(dialect) if cfg.turn_detection else None
    transcription = (cfg.transcription.model_dump(exclude_none=True)
                     if cfg.transcription else None)
    if dialect is Dialect.GA:
        if transcription is not None:
            transcription = {k: v for k, v in transcription.items()
                             if k in ("model", "language", "prompt", "languages", "keywords",
                                      "delay")}
        if cfg.transcription_only:
            return {"type": "transcription", "id": session_id,
                    "object": "realtime.transcription_session", "expires_at": expires_at,
                    "audio": {"input": {"format": _render_ga_format(cfg.input_format),
                                        "noise_reduction": _noise_reduction(cfg),
                                        "transcription": transcription,
                                        "turn_detection": turn}}}
        return {
            "type": "realtime", "id": session_id, "object": "realtime.session",
            "model": cfg.model, "output_modalities": ["audio"] if cfg.audio_output else ["text"],
            "instructions": cfg.instructions, "tools": tools,
            "tool_choice": render_tool_choice(cfg.tool_choice),
            "max_output_tokens": cfg.max_output_tokens, "expires_at": expires_at,
            "truncation": cfg.truncation.render(),
            "include": [LOGPROBS] if cfg.transcription_logprobs else None,
            "audio": {
                "input": {"format": _render_ga_format(cfg.input_format),
                          "noise_reduction": _noise_reduction(cfg),
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
        "input_audio_transcription": transcription, "turn_detection": turn,
        "input_audio_noise_reduction": _noise_reduction(cfg), "tools": tools,
        "tool_choice": render_tool_choice(cfg.tool_choice), "temperature": cfg.temperature,
        "max_response_output_tokens": cfg.max_output_tokens, "expires_at": expires_at,
    }
    if dialect is Dialect.VOICE_LIVE:
        session["input_audio_sampling_rate"] = cfg.input_format.rate
        session["input_audio_echo_cancellation"] = (cfg.echo_cancellation.model_dump()
                                                    if cfg.echo_cancellation else None)
        session["animation"] = (cfg.animation.model_dump(exclude_none=True)
                                if cfg.animation else None)
        session["output_audio_timestamp_types"] = ["word"] if cfg.word_timestamps else None
        session["interim_response"] = (cfg.interim_response.model_dump()
                                       if cfg.interim_response else None)
    session["include"] = [LOGPROBS] if cfg.transcription_logprobs else None
    if dialect is Dialect.BETA:
        session["voice"] = cfg.voice
    return session
