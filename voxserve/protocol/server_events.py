"""Server events: one typed model per event, named as beta / Voice Live name them.

`render(dialect)` turns an event into the wire dict for a connection: GA renames the audio, text
and transcript events, splits `conversation.item.created` into `.added` + `.done`, renders
assistant content as `output_audio` / `output_text`, and nests the session. An event that does
not exist in a dialect renders to `None` and is not sent.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from voxserve.protocol.dialects import Dialect
from voxserve.protocol.ids import new_id
from voxserve.protocol.items import Item
from voxserve.protocol.session_config import (
    SessionConfig, render_session, render_transcription_session,
)


class ServerEvent(BaseModel):
    type: ClassVar[str]
    ga_type: ClassVar[str | None] = ""  # "" = same name in GA; None = not sent to GA
    flat_type: ClassVar[str | None] = ""  # "" = same name in beta/VL; None = not sent there
    voice_live_only: ClassVar[bool] = False
    beta_only: ClassVar[bool] = False
    extension: ClassVar[bool] = False  # voxserve.* events: only sent when a session opts in

    def wire_type(self, dialect: Dialect) -> str | None:
        if self.voice_live_only and dialect is not Dialect.VOICE_LIVE:
            return None
        if self.beta_only and dialect is not Dialect.BETA:
            return None
        override = self.ga_type if dialect is Dialect.GA else self.flat_type
        if override is None:
            return None
        return override or self.type

    def payload(self, dialect: Dialect) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Item):
                value = value.render(dialect)
            elif isinstance(value, BaseModel):
                value = value.model_dump()
            data[name] = value
        return data

    def render(self, dialect: Dialect) -> dict[str, Any] | None:
        kind = self.wire_type(dialect)
        if kind is None:
            return None
        return {"type": kind, "event_id": new_id("event"), **self.payload(dialect)}


# --- session -----------------------------------------------------------------------------------


class _SessionEvent(ServerEvent):
    session_id: str
    expires_at: int
    config: SessionConfig

    def payload(self, dialect: Dialect) -> dict[str, Any]:
        return {"session": render_session(self.config, dialect, self.session_id, self.expires_at)}


class SessionCreatedEvent(_SessionEvent):
    type = "session.created"


class SessionUpdatedEvent(_SessionEvent):
    type = "session.updated"


class TranscriptionSessionUpdatedEvent(_SessionEvent):  # beta
    type = "transcription_session.updated"

    def payload(self, dialect: Dialect) -> dict[str, Any]:
        return {"session": render_transcription_session(self.config, self.session_id,
                                                        self.expires_at)}


class ConversationCreatedEvent(ServerEvent):
    """Beta's announcement of the session's one conversation, right after `session.created`."""

    type = "conversation.created"
    beta_only = True
    conversation_id: str

    def payload(self, dialect: Dialect) -> dict[str, Any]:
        return {"conversation": {"id": self.conversation_id, "object": "realtime.conversation"}}


class ErrorDetail(BaseModel):
    type: Literal["invalid_request_error", "server_error"]
    code: str | None = None
    message: str
    param: str | None = None
    event_id: str | None = None


class ErrorEvent(ServerEvent):
    type = "error"
    error: ErrorDetail


class WarningDetail(BaseModel):
    message: str
    code: str | None = None
    param: str | None = None


class WarningEvent(ServerEvent):  # Voice Live's non-fatal notice
    type = "warning"
    voice_live_only = True
    warning: WarningDetail


# --- input audio buffer ------------------------------------------------------------------------


class SpeechStartedEvent(ServerEvent):
    type = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class SpeechStoppedEvent(ServerEvent):
    type = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class CommittedEvent(ServerEvent):
    type = "input_audio_buffer.committed"
    previous_item_id: str | None
    item_id: str


class ClearedEvent(ServerEvent):
    type = "input_audio_buffer.cleared"


class TimeoutTriggeredEvent(ServerEvent):
    """GA only: no speech for `idle_timeout_ms` after the agent finished; a turn follows."""

    type = "input_audio_buffer.timeout_triggered"
    flat_type = None
    audio_start_ms: int
    audio_end_ms: int
    item_id: str


# --- conversation ------------------------------------------------------------------------------


class ItemAddedEvent(ServerEvent):
    """GA `conversation.item.added`; beta / Voice Live `conversation.item.created`."""

    type = "conversation.item.added"
    flat_type = "conversation.item.created"
    previous_item_id: str | None
    item: Item


class ItemDoneEvent(ServerEvent):
    """GA only: the item is final. Flat dialects learn that from `response.output_item.done`."""

    type = "conversation.item.done"
    flat_type = None
    previous_item_id: str | None
    item: Item


class ItemDeletedEvent(ServerEvent):
    type = "conversation.item.deleted"
    item_id: str


class ItemRetrievedEvent(ServerEvent):
    type = "conversation.item.retrieved"
    item: Item

    def payload(self, dialect: Dialect) -> dict[str, Any]:
        return {"item": self.item.render(dialect, with_audio=True)}


class ItemTruncatedEvent(ServerEvent):
    type = "conversation.item.truncated"
    item_id: str
    content_index: int
    audio_end_ms: int


class TranscriptionDeltaEvent(ServerEvent):
    type = "conversation.item.input_audio_transcription.delta"
    item_id: str
    content_index: int
    delta: str
    logprobs: list[dict[str, Any]] | None = None  # asked for with `include`

    def payload(self, dialect: Dialect) -> dict[str, Any]:
        data = super().payload(dialect)
        if self.logprobs is None:
            data.pop("logprobs", None)
        return data


class TranscriptionCompletedEvent(ServerEvent):
    type = "conversation.item.input_audio_transcription.completed"
    item_id: str
    content_index: int
    transcript: str
    audio_seconds: float
    logprobs: list[dict[str, Any]] | None = None  # asked for with `include`

    def payload(self, dialect: Dialect) -> dict[str, Any]:
        data: dict[str, Any] = {"item_id": self.item_id, "content_index": self.content_index,
                                "transcript": self.transcript}
        if dialect is not Dialect.VOICE_LIVE:  # required in both openai unions; not in VL
            data["usage"] = {"type": "duration", "seconds": round(self.audio_seconds, 3)}
        if self.logprobs is not None:
            data["logprobs"] = self.logprobs
        return data


class TranscriptionFailedEvent(ServerEvent):
    type = "conversation.item.input_audio_transcription.failed"
    item_id: str
    content_index: int
    error: ErrorDetail


# --- responses ---------------------------------------------------------------------------------


class Usage(BaseModel):
    input_text_tokens: int = 0
    input_audio_tokens: int = 0
    cached_tokens: int = 0
    output_text_tokens: int = 0
    output_audio_tokens: int = 0

    def render(self) -> dict[str, Any]:
        inp = self.input_text_tokens + self.input_audio_tokens
        out = self.output_text_tokens + self.output_audio_tokens
        return {
            "total_tokens": inp + out, "input_tokens": inp, "output_tokens": out,
            "input_token_details": {
                "cached_tokens": self.cached_tokens, "text_tokens": self.input_text_tokens,
                "audio_tokens": self.input_audio_tokens, "image_tokens": 0,
                "cached_tokens_details": {"text_tokens": self.cached_tokens,
                                          "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": self.output_text_tokens,
                                     "audio_tokens": self.output_audio_tokens},
        }


ResponseStatus = Literal["in_progress", "completed", "cancelled", "incomplete", "failed"]


class ResponseSnapshot(BaseModel):
    id: str
    status: ResponseStatus = "in_progress"
    status_details: dict[str, Any] | None = None
    output: list[Item] = []
    usage: Usage | None = None
    audio_output: bool = True
    voice: str = "alloy"
    output_format: str = "pcm16"
    max_output_tokens: int | Literal["inf"] = "inf"
    conversation_id: str | None = None
    metadata: dict[str, str] | None = None

    def render(self, dialect: Dialect) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id, "object": "realtime.response", "status": self.status,
            "status_details": self.status_details,
            "output": [item.render(dialect) for item in self.output],
            "usage": self.usage.render() if self.usage else None,
            "metadata": self.metadata,
        }
        if dialect is Dialect.GA:
            data.update(output_modalities=["audio"] if self.audio_output else ["text"],
                        max_output_tokens=self.max_output_tokens,
                        conversation_id=self.conversation_id,
                        audio={"output": {"voice": self.voice}})
        else:
            data.update(modalities=["text", "audio"] if self.audio_output else ["text"],
                        voice=self.voice, output_audio_format=self.output_format,
                        max_output_tokens=self.max_output_tokens)
        return data


class ResponseCreatedEvent(ServerEvent):
    type = "response.created"
    response: ResponseSnapshot

    def payload(self, dialect: Dialect) -> dict[str, Any]:
        return {"response": self.response.render(dialect)}


class ResponseDoneEvent(ResponseCreatedEvent):
    type = "response.done"


class OutputItemAddedEvent(ServerEvent):
    type = "response.output_item.added"
    response_id: str
    output_index: int
    item: Item


class OutputItemDoneEvent(OutputItemAddedEvent):
    type = "response.output_item.done"


class _PartRef(ServerEvent):
    response_id: str
    item_id: str
    output_index: int
    content_index: int


class ContentPartAddedEvent(_PartRef):
    type = "response.content_part.added"
    part: dict[str, Any]  # {"type": "audio"|"text", ...}: the same in every dialect


class ContentPartDoneEvent(ContentPartAddedEvent):
    type = "response.content_part.done"


class AudioDeltaEvent(_PartRef):
    type = "response.audio.delta"
    ga_type = "response.output_audio.delta"
    delta: str


class AudioDoneEvent(_PartRef):
    type = "response.audio.done"
    ga_type = "response.output_audio.done"


class AudioTranscriptDeltaEvent(_PartRef):
    type = "response.audio_transcript.delta"
    ga_type = "response.output_audio_transcript.delta"
    delta: str


class _Sourced(_PartRef):
    # VoiceRAG: the documents a server-side search gave the answer (voxserve/server_tools.py),
    # [{path, title, section}]; absent when the response searched nothing.
    sources: list[dict[str, Any]] | None = None

    def payload(self, dialect: Dialect) -> dict[str, Any]:
        data = super().payload(dialect)
        if data.get("sources") is None:
            data.pop("sources", None)
        return data


class AudioTranscriptDoneEvent(_Sourced):
    type = "response.audio_transcript.done"
    ga_type = "response.output_audio_transcript.done"
    transcript: str


class TextDeltaEvent(_PartRef):
    type = "response.text.delta"
    ga_type = "response.output_text.delta"
    delta: str


class TextDoneEvent(_Sourced):
    type = "response.text.done"
    ga_type = "response.output_text.done"
    text: str


# Voice Live: what rides on the spoken audio, keyed to its content part, each sent no later
# than the audio it describes (voxserve/session/speech_marks.py).


class AudioTimestampDeltaEvent(_PartRef):  # Voice Live
    type = "response.audio_timestamp.delta"
    voice_live_only = True
    audio_offset_ms: int
    audio_duration_ms: int
    text: str
    timestamp_type: str = "word"


class AudioTimestampDoneEvent(_PartRef):  # Voice Live
    type = "response.audio_timestamp.done"
    voice_live_only = True


class AnimationVisemeDeltaEvent(_PartRef):  # Voice Live
    type = "response.animation_viseme.delta"
    voice_live_only = True
    audio_offset_ms: int
    viseme_id: int


class AnimationVisemeDoneEvent(_PartRef):  # Voice Live
    type = "response.animation_viseme.done"
    voice_live_only = True


class AnimationBlendshapesDeltaEvent(_PartRef):  # Voice Live
    type = "response.animation_blendshapes.delta"
    voice_live_only = True
    frame_index: int  # of the first frame here, counted from the part's first frame
    frames: list[list[float]]  # 55 weights per frame, 60 frames per second of audio


class AnimationBlendshapesDoneEvent(ServerEvent):  # Voice Live: no content_index here
    type = "response.animation_blendshapes.done"
    voice_live_only = True
    response_id: str
    item_id: str
    output_index: int


class _CallRef(ServerEvent):
    response_id: str
    item_id: str
    output_index: int
    call_id: str


class FunctionCallArgumentsDeltaEvent(_CallRef):
    type = "response.function_call_arguments.delta"
    delta: str


class FunctionCallArgumentsDoneEvent(_CallRef):
    type = "response.function_call_arguments.done"
    name: str
    arguments: str


class OutputAudioBufferClearedEvent(ServerEvent):
    type = "output_audio_buffer.cleared"
    response_id: str | None = None

    def payload(self, dialect: Dialect) -> dict[str, Any]:
        # Voice Live's event has no fields; OpenAI's carries the response id.
        if dialect is Dialect.VOICE_LIVE:
            return {}
        return {"response_id": self.response_id or ""}


class ResponseTimingEvent(ServerEvent):
    """VoxServe extension, sent after `response.done` only to sessions that asked for it
    (`session.voxserve.response_timing`). Milliseconds; TTFA counts from the end of the user's
    speech as it arrived here; a stage that did not run is null."""

    type = "voxserve.response.timing"
    extension = True
    response_id: str
    status: str
    end_of_turn_ms: float | None = None
    asr_ms: float | None = None
    context_ms: float | None = None  # end of turn -> the LLM request ready
    llm_first_token_ms: float | None = None
    first_piece_ms: float | None = None  # first token -> the first text handed to TTS
    tts_first_chunk_ms: float | None = None
    ttfa_ms: float | None = None
    total_ms: float | None = None


def wire_names(event: type[ServerEvent]) -> frozenset[str]:
    """Every name `event` goes by on the wire, over the dialects that send it: what a client
    matching incoming events by `type` accepts (GA and beta / Voice Live names differ)."""
    sample = event.model_construct()  # `wire_type` reads only class-level names
    return frozenset(name for dialect in Dialect if (name := sample.wire_type(dialect)))
