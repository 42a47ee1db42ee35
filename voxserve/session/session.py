"""A realtime session: one WebSocket connection, its scope and the parts that serve it.

Structured concurrency: `serve()` runs one task group per connection. It holds the writer, the
session timer and every task the parts start; each part owns its own tasks (`TaskOwner`), and
when the client goes, `_shutdown` cancels them all: the pause scope, transcriptions, the
interruption being judged, the warm-up and the response, and with them every Serve call in
flight. A bad client message becomes an `error` event and the session goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from typing import Any, Protocol

from voxserve.audio.denoise import make_denoiser
from voxserve.audio.echo import EchoReference
from voxserve.audio.front_end import FrontEnd, aec3
from voxserve.config import AsrOptions, LimitsOptions, SessionOptions, VadOptions, fast_engine
from voxserve.models.base import EndOfTurnModel, VadModel
from voxserve.protocol import client_events as ce
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.ids import new_id
from voxserve.protocol.response_overrides import ResponseOverrides
from voxserve.protocol.server_events import (
    ConversationCreatedEvent, ErrorDetail, ErrorEvent, ServerEvent, SessionCreatedEvent,
)
from voxserve.protocol.session_config import SessionConfig, VoiceTable
from voxserve.server_tools import ServerTool
from voxserve.session.conversation import CONVERSATION_ID, Conversation
from voxserve.session.handlers import router
from voxserve.session.limits import InputLimits
from voxserve.session.listener import Heard, Listener, threaded
from voxserve.session.observer import NullObserver, SessionObserver
from voxserve.session.pipeline import Pipeline
from voxserve.session.playback import Playback
from voxserve.session.responder import Responder, response_options
from voxserve.session.response import ResponseOptions, chat_request
from voxserve.session.tasks import TaskOwner
from voxserve.session.transcriber import Transcriber
from voxserve.session.turn import Turn
from voxserve.session.turn_taking import TurnTaking
from voxserve.tracing import tracer

log = logging.getLogger("voxserve.session")

# Server events queued for a slow reader before `send` waits: ~10 s of 100 ms audio deltas
# plus their transcript and bookkeeping events.
OUTBOX_SIZE = 512


class SlowClient(Exception):
    """A send to the client blocked for `limits.slow_client_seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"client is not reading: a send blocked for {seconds:g} s "
                         "(limits.slow_client_seconds)")


class Transport(Protocol):
    async def receive(self) -> str | bytes | None: ...  # None once the client has gone

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class RealtimeSession:
    def __init__(self, dialect: Dialect, pipeline: Pipeline, vad_factory: Callable[[], VadModel],
                 session: SessionOptions, vad: VadOptions, *, model: str | None = None,
                 observer: SessionObserver | None = None, eot_model: EndOfTurnModel | None = None,
                 model_names: dict[str, str] | None = None, transcription_only: bool = False,
                 transcription_models: Collection[str] | None = None,
                 initial_config: SessionConfig | None = None,
                 limits: LimitsOptions | None = None, asr: AsrOptions | None = None,
                 server_tools: Sequence[ServerTool] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.id = new_id("sess")
        self.dialect = dialect
        self.observer: SessionObserver = observer or NullObserver()
        self._options = session
        self._limits = limits = limits or LimitsOptions()
        self._frame_limits = ce.FrameLimits(limits.max_message_bytes, limits.max_json_depth)
        self.input_limits = InputLimits(limits, clock)
        self._pipeline = pipeline
        self._server_tools = tuple(server_tools)  # e.g. VoiceRAG's search_knowledge
        self._clock = clock
        self._turn_attributes = {f"voxserve.{k}_model": v for k, v in (model_names or {}).items()}
        self.voices = VoiceTable(session.voices, session.default_voice, session.strict_voices)
        # transcription model names the operator maps to an engine (None: any name is served)
        self.transcription_models = (None if transcription_models is None
                                     else frozenset(m.lower() for m in transcription_models))
        # `transcription_only`: the client asked for it when connecting (?intent=transcription)
        self._config = initial_config or SessionConfig(
            model=model or session.model_name, voice=session.default_voice,
            transcription_only=transcription_only).effective()
        # `initial_config` is a client secret's scope (voxserve/client_secrets.py): its model
        # stays the session's whatever a session.update names
        self._pinned_model = initial_config.model if initial_config else None
        self.expires_at = int(time.time() + limits.max_session_seconds)
        self._last_heard = time.monotonic()  # the last client message (the idle timeout)
        self.conversation = Conversation(limits.max_conversation_items)
        self._span: Any = None  # the session's span; each turn's trace links to it
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(OUTBOX_SIZE)
        self._tg: asyncio.TaskGroup | None = None
        self._closed = False
        self._warmups = TaskOwner(self._spawn)

        def config() -> SessionConfig:
            return self._config
        # partial transcripts while the user talks, on turns the fast ASR engine decodes
        asr = asr or AsrOptions(partial_interval_ms=0)
        partial_interval_ms = (asr.partial_interval_ms
                               if asr.engine == "moonshine" or asr.english is not None else 0)
        self.transcriber = Transcriber(pipeline, self.conversation, self.send,
                                       TaskOwner(self._spawn), config, self.id, clock,
                                       partials_for=lambda *recognised: fast_engine(asr, *recognised),
                                       on_words=lambda item_id, words: self.turns.prefill(
                                           item_id, words))
        self.listener = Listener(
            vad_factory=vad_factory, vad=vad, max_buffer_seconds=limits.max_buffer_seconds,
            decode=self.transcriber.decode, audio_p=threaded(eot_model),
            tasks=TaskOwner(self._spawn), begin_turn=self._begin_turn, on_heard=self._on_heard,
            session_id=self.id, partial_interval_ms=partial_interval_ms, clock=clock)
        self.responder = Responder(
            session_id=self.id, conversation=self.conversation, pipeline=pipeline, send=self.send,
            tasks=TaskOwner(self._spawn), observer=self.observer, config=config,
            system_prompt=self._system_prompt, on_started=self.listener.stop_idle_clock,
            on_quiet=self.listener.start_idle_clock,
            playback=Playback(limits.max_audio_lead_seconds), clock=clock)
        self.turns = TurnTaking(
            session_id=self.id, vad=vad, listener=self.listener, responder=self.responder,
            transcriber=self.transcriber, conversation=self.conversation, send=self.send,
            tasks=TaskOwner(self._spawn), observer=self.observer, begin_turn=self._begin_turn,
            options=self.options, pipeline=pipeline, system_prompt=self._system_prompt,
            clock=clock)
        self.listener.configure(self._config.turn_detection)

    # ---- what the handlers use ---------------------------------------------------------------

    @property
    def config(self) -> SessionConfig:
        return self._config

    async def apply_config(self, config: SessionConfig) -> None:
        """A validated `session.update`: the listener follows the turn detection, and new
        instructions or tools are prefilled in the LLM before the next turn needs them."""
        if self._pinned_model is not None:
            config = config.model_copy(update={"model": self._pinned_model})
        def prompt(c: SessionConfig) -> tuple[object, ...]:  # what the warmed prefix holds
            return (c.instructions, c.tools, c.tool_choice, c.knowledge)
        prompt_changed = prompt(config) != prompt(self._config)
        front_end_changed = ((config.echo_cancellation, config.noise_reduction)
                             != (self._config.echo_cancellation, self._config.noise_reduction))
        self._config = config
        self.listener.configure(config.turn_detection)
        if front_end_changed:
            await self._configure_front_end()
        if prompt_changed:
            self._warm()

    def options(self, overrides: ResponseOverrides | None = None) -> ResponseOptions:
        return response_options(self._config, overrides, self.voices, self._system_prompt(),
                                self.conversation, self._server_tools)

    async def send(self, event: ServerEvent) -> None:
        """Render now (later mutations of the event's objects must not leak) and queue."""
        if self._closed:
            return
        if event.extension and not self._config.response_timing:
            return
        wire = event.render(self.dialect)
        if wire is not None:
            await self._outbox.put(json.dumps(wire, separators=(",", ":")))

    # ---- the connection ------------------------------------------------------------------------

    async def serve(self, transport: Transport) -> None:
        self._span = tracer().start_span("voxserve.session", attributes={
            "voxserve.session_id": self.id, "voxserve.dialect": self.dialect.value})
        self.observer.session_opened(self.dialect.value)
        log.info("session.open session=%s dialect=%s model=%s", self.id, self.dialect.value,
                 self._config.model)
        try:
            await self._serve(transport)
        except* SlowClient as group:
            reason = str(group.exceptions[0])
            log.warning("session.slow_client session=%s: %s", self.id, reason)
            self.observer.error("slow_client")
            try:  # the socket is full, so the close frame may not get through either
                await asyncio.wait_for(transport.close(1008, reason[:120]), 5.0)
            except (TimeoutError, ConnectionError, RuntimeError):
                pass
        finally:
            self.observer.session_closed(self.dialect.value)
            self._span.end()
            log.info("session.close session=%s", self.id)

    async def _serve(self, transport: Transport) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            if self._config.echo_cancellation or self._config.noise_reduction:
                await self._configure_front_end()  # a client secret's scope asked for them
            writer = tg.create_task(self._writer(transport))
            timer = tg.create_task(self._expire(transport))
            await self.send(SessionCreatedEvent(session_id=self.id, expires_at=self.expires_at,
                                                config=self._config))
            await self.send(ConversationCreatedEvent(conversation_id=CONVERSATION_ID))
            self._warm()
            try:
                while (message := await transport.receive()) is not None:
                    await self.handle_message(message)
            finally:
                await self._shutdown()
                timer.cancel()
                if self._outbox.full():  # a client that stopped reading gets no more
                    writer.cancel()
                else:
                    self._outbox.put_nowait(None)  # the writer drains what is queued, then ends

    async def handle_message(self, message: str | bytes) -> None:
        self._last_heard = time.monotonic()
        verdict = self.input_limits.admit_event()
        if not verdict.admitted:
            if verdict.notice is not None:
                await self.send_error(verdict.notice)
            return
        if isinstance(message, bytes):
            await self.send_error(ProtocolError(
                ErrorCode.INVALID_JSON, "binary frames are not part of the protocol; send JSON "
                "text frames with base64 audio"))
            return
        try:
            event = ce.parse_client_event(message, self._frame_limits)
        except ce.ParsedError as err:
            await self.send_error(err, err.event_id)
            return
        if event.voice_live_only and self.dialect is not Dialect.VOICE_LIVE:
            await self.send_error(ProtocolError(
                ErrorCode.UNKNOWN_EVENT_TYPE,
                f"{event.type} is a Voice Live event; connect to /voice-live/realtime", "type"),
                event.event_id)
            return
        try:
            await router.dispatch(self, event)
        except ProtocolError as err:
            await self.send_error(err, event.event_id)
        except Exception as exc:  # a bug or a model failure must not end the session
            log.exception("session %s: handling %s failed", self.id, event.type)
            await self.send_error(ProtocolError(ErrorCode.SERVER_ERROR,
                                                 f"internal error handling {event.type}: "
                                                 f"{str(exc)[:200]}",
                                                 type="server_error"), event.event_id)

    async def send_error(self, err: ProtocolError, event_id: str | None = None) -> None:
        self.observer.error(str(err.code))
        log.info("error session=%s code=%s param=%s message=%s", self.id, err.code, err.param,
                 err.message)
        await self.send(ErrorEvent(error=ErrorDetail(type=err.type, code=str(err.code),
                                                     message=err.message, param=err.param,
                                                     event_id=event_id)))

    async def _writer(self, transport: Transport) -> None:
        while (text := await self._outbox.get()) is not None:
            try:
                async with asyncio.timeout(self._limits.slow_client_seconds):
                    await transport.send(text)
            except TimeoutError:
                # The socket stayed full: the client stopped reading. Ending the session here
                # (the task group cancels the rest) bounds what waits for it to the outbox.
                self._closed = True
                raise SlowClient(self._limits.slow_client_seconds) from None

    async def _expire(self, transport: Transport) -> None:
        reason = await self._until_expired()
        await self.send_error(ProtocolError(ErrorCode.SESSION_EXPIRED, reason))
        await asyncio.sleep(0.5)  # let the writer flush the error before the close frame
        await transport.close(1000, "session expired")

    async def _until_expired(self) -> str:
        """Sleeps until the session's maximum duration or its idle timeout; says which."""
        idle = self._limits.idle_timeout_seconds
        while True:
            left = self.expires_at - time.time()
            if left <= 0:
                return (f"the session reached its maximum duration of "
                        f"{self._limits.max_session_seconds:g} s (limits.max_session_seconds)")
            if idle is not None:
                if self.responder.active is not None:
                    self._last_heard = time.monotonic()  # an answer in progress is not idle
                quiet_left = self._last_heard + idle - time.monotonic()
                if quiet_left <= 0:
                    return (f"no client message for {idle:g} s (limits.idle_timeout_seconds); "
                            "the session is closed")
                left = min(left, quiet_left)
            await asyncio.sleep(left)

    async def _shutdown(self) -> None:
        # The client is gone: nothing more is queued for it (a close-out written to a dead
        # socket would only fail the writer), and everything the session started is cancelled,
        # so no replica keeps working for it.
        self._closed = True
        self.listener.cancel()
        self.turns.cancel()
        self.transcriber.cancel()
        self._warmups.cancel()
        await self.turns.cancel_response("client_cancelled")
        for future in self.conversation.transcripts.values():
            future.cancel()

    # ---- helpers --------------------------------------------------------------------------------

    async def _configure_front_end(self) -> None:
        """The microphone path for the session's echo and noise settings; a new one starts
        from scratch (AEC3 converges again within a few seconds), so `session.updated` means
        the settings are in effect."""
        echo, noise = self._config.echo_cancellation, self._config.noise_reduction
        reference = (EchoReference() if echo is not None and echo.reference_source == "server"
                     else None)
        self.responder.playback.reference = reference
        chain = "+".join(([] if echo is None else ["aec"]) + ([] if noise is None else [noise]))
        front_end = FrontEnd(
            echo=aec3() if echo is not None else None, reference=reference,
            client_reference=echo is not None and echo.reference_source == "client",
            chain=chain, on_cost=self.observer.front_end)
        self.listener.front_end = front_end
        if echo is not None or noise is not None:
            log.info("session %s: front end %s", self.id, chain)
        if noise is None:
            return
        try:
            # On the event loop thread, though DeepFilterNet3's runtime takes 0.15-0.3 s to make:
            # it is bound to the thread that made it (a PyO3 `unsendable`: made in a worker
            # thread, it failed when the loop dropped it and the session ended)
            front_end.denoiser = make_denoiser(noise)
        except Exception as exc:  # an engine missing from this install: say so, go on without
            log.warning("session %s: noise suppression %s failed to start", self.id, noise,
                        exc_info=True)
            param = ("session.audio.input.noise_reduction" if self.dialect is Dialect.GA
                     else "session.input_audio_noise_reduction")
            await self.send_error(ProtocolError(
                ErrorCode.SERVER_ERROR, f"noise suppression {noise!r} could not start on this "
                f"server ({str(exc)[:200]}); the session goes on without it", param,
                type="server_error"))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        assert self._tg is not None, "session is not being served"
        return self._tg.create_task(coro)

    async def _on_heard(self, heard: Heard) -> None:
        await self.turns.on(heard)

    def _begin_turn(self, speech_end: float) -> Turn:
        return Turn.begin(speech_end, self.id, self._span, **self._turn_attributes)

    def _system_prompt(self) -> str:
        return self._config.instructions or self._options.system_prompt

    def _warm(self) -> None:
        self._warmups.start(self._warm_prefix())

    async def _warm_prefix(self) -> None:
        # The instructions as the next answer's request renders them, its tools' descriptions
        # included (they end the system turn): a typed question then prefills only itself.
        try:
            request = chat_request(self.options(), [
                {"role": "system", "content": self._system_prompt()}], "")
            await self._pipeline.warm(request.messages, request.tools, request.tool_choice)
        except Exception:  # warming is an optimisation; a failure shows up on the next turn
            log.warning("session %s: LLM prefix warm-up failed", self.id, exc_info=True)

