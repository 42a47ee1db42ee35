"""One handler per client event, named after it, registered in the `EventRouter`.

Handlers are thin: they turn a typed client event into calls on the session's parts (listener,
turn taking, responder, transcriber, conversation) through their public methods, and answer with
server events. A `ProtocolError` raised here becomes an `error` event; the session goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import numpy as np

from voxserve.audio.formats import AudioFormat, b64decode_strict
from voxserve.protocol import client_events as ce
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.items import Item, parse_client_item
from voxserve.protocol.response_overrides import ResponseOverrides, parse_response_overrides
from voxserve.protocol.server_events import (
    ClearedEvent, ItemAddedEvent, ItemDeletedEvent, ItemDoneEvent, ItemRetrievedEvent,
    ItemTruncatedEvent, OutputAudioBufferClearedEvent, ServerEvent, SessionUpdatedEvent,
    TranscriptionSessionUpdatedEvent, WarningDetail, WarningEvent,
)
from voxserve.protocol.session_config import SessionConfig, UpdateResult, VoiceTable, apply_update
from voxserve.session.conversation import Conversation
from voxserve.session.input_buffer import to_session_rate
from voxserve.session.limits import InputLimits
from voxserve.session.listener import Listener
from voxserve.session.responder import Responder
from voxserve.session.response import ResponseOptions
from voxserve.session.transcriber import Transcriber
from voxserve.session.turn_taking import TurnTaking


class SessionContext(Protocol):
    """What a handler may use of its session (`RealtimeSession` provides it)."""

    id: str
    dialect: Dialect
    expires_at: int
    voices: VoiceTable
    transcription_models: frozenset[str] | None
    conversation: Conversation
    listener: Listener
    turns: TurnTaking
    responder: Responder
    transcriber: Transcriber
    input_limits: InputLimits

    @property
    def config(self) -> SessionConfig: ...

    async def apply_config(self, config: SessionConfig) -> None: ...

    def options(self, overrides: ResponseOverrides | None = None) -> ResponseOptions: ...

    async def send(self, event: ServerEvent) -> None: ...

    async def send_error(self, err: ProtocolError, event_id: str | None = None) -> None: ...


E = TypeVar("E", bound=ce._ClientEvent)
log = logging.getLogger("voxserve.session")

Handler = Callable[[SessionContext, Any], Awaitable[None]]


class EventRouter:
    """Client event class -> its handler; a second handler for one class is a bug."""

    def __init__(self) -> None:
        self._handlers: dict[type, Handler] = {}

    def handles(self, event_type: type[E]) -> Callable[[Callable[[SessionContext, E], Awaitable[None]]],
                                                       Callable[[SessionContext, E], Awaitable[None]]]:
        def register(fn: Callable[[SessionContext, E], Awaitable[None]]
                     ) -> Callable[[SessionContext, E], Awaitable[None]]:
            if event_type in self._handlers:
                raise RuntimeError(f"two handlers for {event_type.__name__}")
            self._handlers[event_type] = fn
            return fn
        return register

    @property
    def event_types(self) -> frozenset[type]:
        return frozenset(self._handlers)

    async def dispatch(self, ctx: SessionContext, event: ce._ClientEvent) -> None:
        await self._handlers[type(event)](ctx, event)


router = EventRouter()


def _audio(b64: str, param: str = "audio") -> bytes:
    try:
        return b64decode_strict(b64)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_VALUE, str(exc), param) from None


def _audio_16k(b64: str, fmt: AudioFormat, param: str) -> np.ndarray:
    data = _audio(b64, param)
    try:
        return to_session_rate(data, fmt)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_VALUE, str(exc), param) from None


# ---- session and input audio -------------------------------------------------------------------


@router.handles(ce.SessionUpdateEvent)
async def session_update(ctx: SessionContext, ev: ce.SessionUpdateEvent) -> None:
    result = apply_update(ctx.config, ev.session, ctx.dialect, ctx.voices,
                          ctx.responder.audio_produced)
    await _report(ctx, result, ev.event_id)
    if not result.applied:
        return
    await ctx.apply_config(result.config)
    await ctx.send(SessionUpdatedEvent(session_id=ctx.id, expires_at=ctx.expires_at,
                                       config=ctx.config))


@router.handles(ce.TranscriptionSessionUpdateEvent)
async def transcription_session_update(ctx: SessionContext,
                                       ev: ce.TranscriptionSessionUpdateEvent) -> None:
    """Beta's transcription-only session: the flat fields of session.update that apply to input
    (format, transcription, turn detection), and from now on no responses."""
    if ctx.dialect is not Dialect.BETA:
        raise ProtocolError(ErrorCode.UNKNOWN_EVENT_TYPE, "transcription_session.update is a beta "
                            "event; GA sends session.update with session.type 'transcription'",
                            "type")
    result = apply_update(ctx.config.model_copy(update={"transcription_only": True}), ev.session,
                          ctx.dialect, ctx.voices, ctx.responder.audio_produced)
    await _report(ctx, result, ev.event_id)
    await ctx.apply_config(result.config)  # apply_update returns the effective, transcribe-only config
    await ctx.send(TranscriptionSessionUpdatedEvent(session_id=ctx.id, expires_at=ctx.expires_at,
                                                    config=ctx.config))


@router.handles(ce.InputAudioBufferAppendEvent)
async def input_audio_buffer_append(ctx: SessionContext,
                                    ev: ce.InputAudioBufferAppendEvent) -> None:
    await _append(ctx, ev.audio)


async def _append(ctx: SessionContext, b64: str) -> None:
    """Input audio, within the session's audio rate limit (voxserve/session/limits.py)."""
    data = _audio(b64)
    verdict = ctx.input_limits.admit_audio(ctx.listener.front_end.seconds(len(data),
                                                                          ctx.config.input_format))
    if verdict.notice is not None:
        raise verdict.notice
    if verdict.admitted:
        await ctx.listener.append(data, ctx.config.input_format)


@router.handles(ce.InputAudioBufferCommitEvent)
async def input_audio_buffer_commit(ctx: SessionContext,
                                    ev: ce.InputAudioBufferCommitEvent) -> None:
    item_id, audio = ctx.listener.take_buffer()
    await ctx.turns.commit(item_id, audio)


@router.handles(ce.InputAudioBufferClearEvent)
async def input_audio_buffer_clear(ctx: SessionContext, ev: ce.InputAudioBufferClearEvent) -> None:
    ctx.listener.clear()
    ctx.transcriber.drop_partial()
    await ctx.send(ClearedEvent())


# ---- Voice Live client-driven turns: the VAD stays out of them ----------------------------------


@router.handles(ce.InputAudioTurnStartEvent)
async def input_audio_turn_start(ctx: SessionContext, ev: ce.InputAudioTurnStartEvent) -> None:
    ctx.listener.open_client_turn(ev.turn_id)


@router.handles(ce.InputAudioTurnAppendEvent)
async def input_audio_turn_append(ctx: SessionContext, ev: ce.InputAudioTurnAppendEvent) -> None:
    ctx.listener.check_client_turn(ev.turn_id)
    await _append(ctx, ev.audio)


@router.handles(ce.InputAudioTurnEndEvent)
async def input_audio_turn_end(ctx: SessionContext, ev: ce.InputAudioTurnEndEvent) -> None:
    item_id, audio = ctx.listener.end_client_turn(ev.turn_id)
    await ctx.turns.commit(item_id, audio)
    td = ctx.config.turn_detection
    if td is None or td.create_response:
        await ctx.turns.respond(ctx.options(), cancel_previous=True)


@router.handles(ce.InputAudioTurnCancelEvent)
async def input_audio_turn_cancel(ctx: SessionContext, ev: ce.InputAudioTurnCancelEvent) -> None:
    ctx.listener.cancel_client_turn(ev.turn_id)
    ctx.transcriber.drop_partial()
    await ctx.send(ClearedEvent())


@router.handles(ce.InputAudioClearEvent)
async def input_audio_clear(ctx: SessionContext, ev: ce.InputAudioClearEvent) -> None:
    ctx.listener.clear()
    ctx.transcriber.drop_partial()
    await ctx.send(ClearedEvent())


# ---- conversation ------------------------------------------------------------------------------


@router.handles(ce.ConversationItemCreateEvent)
async def conversation_item_create(ctx: SessionContext,
                                   ev: ce.ConversationItemCreateEvent) -> None:
    item = parse_client_item(ev.item)
    part = next((p for p in item.content if p.type == "input_audio" and p.audio), None)
    audio = None
    if part is not None and part.transcript is None:  # audio with no transcript: decode it
        audio = _audio_16k(part.audio or "", ctx.config.input_format, "item.content.audio")
    await _add_item(ctx, item, ev.previous_item_id)
    if audio is not None:
        ctx.transcriber.start(item, audio)


@router.handles(ce.ConversationItemDeleteEvent)
async def conversation_item_delete(ctx: SessionContext,
                                   ev: ce.ConversationItemDeleteEvent) -> None:
    ctx.conversation.delete(ev.item_id)
    await ctx.send(ItemDeletedEvent(item_id=ev.item_id))


@router.handles(ce.ConversationItemRetrieveEvent)
async def conversation_item_retrieve(ctx: SessionContext,
                                     ev: ce.ConversationItemRetrieveEvent) -> None:
    await ctx.send(ItemRetrievedEvent(item=ctx.conversation.get(ev.item_id)))


@router.handles(ce.ConversationItemTruncateEvent)
async def conversation_item_truncate(ctx: SessionContext,
                                     ev: ce.ConversationItemTruncateEvent) -> None:
    item = ctx.conversation.get(ev.item_id)
    if item.type != "message" or item.role != "assistant":
        raise ProtocolError(ErrorCode.INVALID_VALUE, "only assistant messages can be truncated",
                            "item_id")
    if ev.content_index >= len(item.content) or item.content[ev.content_index].type != "audio":
        raise ProtocolError(ErrorCode.INVALID_VALUE,
                            f"content {ev.content_index} of {ev.item_id} is not audio",
                            "content_index")
    spoken = ctx.conversation.spoken.get(item.id)
    duration = spoken.duration_ms if spoken else 0.0
    if ev.audio_end_ms > duration + 1:
        raise ProtocolError(ErrorCode.TRUNCATE_INVALID_AUDIO_END,
                            f"audio_end_ms {ev.audio_end_ms} is past the item's audio "
                            f"({duration:.0f} ms)", "audio_end_ms")
    if spoken is not None:
        item.content[ev.content_index].transcript = spoken.text_until(ev.audio_end_ms)
    ctx.responder.playback.flush()  # the client stopped playing where it truncated
    await ctx.send(ItemTruncatedEvent(item_id=item.id, content_index=ev.content_index,
                                      audio_end_ms=ev.audio_end_ms))


async def _add_item(ctx: SessionContext, item: Item, previous_item_id: str | None = None) -> None:
    previous = ctx.conversation.add(item, previous_item_id)
    await ctx.send(ItemAddedEvent(previous_item_id=previous, item=item))
    await ctx.send(ItemDoneEvent(previous_item_id=previous, item=item))
    await ctx.conversation.announce_evictions(ctx.send)


# ---- responses ---------------------------------------------------------------------------------


@router.handles(ce.ResponseCreateEvent)
async def response_create(ctx: SessionContext, ev: ce.ResponseCreateEvent) -> None:
    if ctx.config.transcription_only:
        raise ProtocolError(ErrorCode.INVALID_VALUE, "this is a transcription session: it "
                            "transcribes the input and never creates responses")
    overrides = parse_response_overrides(ev.response, ctx.dialect, ctx.voices,
                                         ev.additional_instructions)
    notices = list(overrides.notices)
    if overrides.voice_requested is not None:
        notices.append((ctx.voices.fallback_notice(overrides.voice_requested), "response.voice"))
    await _notify(ctx, notices)
    options = ctx.options(overrides)  # before the appended items: it may refuse the response
    for item in overrides.append_items or ():
        await _add_item(ctx, item)
    await ctx.turns.respond(options, cancel_previous=overrides.cancel_previous)


async def _report(ctx: SessionContext, result: UpdateResult, event_id: str | None) -> None:
    """An update's refusals (each field alone: the rest applies) and its notices."""
    for err in result.errors:
        await ctx.send_error(err, event_id)
    await _notify(ctx, result.warnings + _model_notice(ctx, result.config))


def _model_notice(ctx: SessionContext, cfg: SessionConfig) -> list[tuple[str, str]]:
    """A transcription model name the operator's table does not know is still served, by the
    default engine; the client is told which."""
    tx, known = cfg.transcription, ctx.transcription_models
    if tx is None or tx.model is None or known is None or tx.model.lower() in known:
        return []
    param = ("session.audio.input.transcription.model" if ctx.dialect is Dialect.GA
             else "session.input_audio_transcription.model")
    return [(f"transcription model {tx.model[:64]!r} is not configured here; the default "
             "speech recognizer transcribes instead", param)]


async def _notify(ctx: SessionContext, notices: list[tuple[str, str]]) -> None:
    """Fields accepted without effect: a Voice Live `warning` each; the OpenAI dialects, whose
    clients know no `warning`, get a log line (their echo shows the effective value)."""
    for message, param in notices:
        if ctx.dialect is Dialect.VOICE_LIVE:
            await ctx.send(WarningEvent(warning=WarningDetail(message=message, code="unsupported",
                                                              param=param)))
        else:
            log.info("session %s: %s (%s)", ctx.id, message, param)


@router.handles(ce.ResponseCancelEvent)
async def response_cancel(ctx: SessionContext, ev: ce.ResponseCancelEvent) -> None:
    active = ctx.responder.active
    if active is None or (ev.response_id is not None and ev.response_id != active.id):
        raise ProtocolError(ErrorCode.CANCEL_NOT_ACTIVE,
                            "there is no active response" if active is None
                            else f"response {ev.response_id} is not the active response",
                            "response_id" if ev.response_id else None)
    await ctx.turns.cancel_response("client_cancelled")


@router.handles(ce.OutputAudioBufferClearEvent)
async def output_audio_buffer_clear(ctx: SessionContext,
                                    ev: ce.OutputAudioBufferClearEvent) -> None:
    # Over WebSocket the client owns playback; clearing means "stop this answer", so the
    # active response (if any) is cancelled before the acknowledgement.
    active = ctx.responder.active
    response_id = active.id if active is not None else ctx.responder.last_response_id
    await ctx.turns.cancel_response("client_cancelled")
    ctx.responder.playback.flush()
    await ctx.send(OutputAudioBufferClearedEvent(response_id=response_id))
