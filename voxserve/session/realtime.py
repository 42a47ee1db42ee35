"""A realtime session: one WebSocket connection's state, its client-event handlers and tasks.

Structured concurrency: `serve()` runs one task group per connection holding the writer, the
session timer, background transcriptions and at most one response. Client events are dispatched
through a registry keyed by event class (no if/elif ladder); each handler is small. A bad client
event becomes an `error` event and the session goes on.

The one path of an input audio frame: `input_audio_buffer.append` -> `InputBuffer.append`
(decode, resample to 16 kHz) -> `TurnDetector.feed` (VAD) -> speech started / stopped -> commit
-> ASR (background) and a response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from voxserve.audio.formats import b64decode_strict
from voxserve.audio.resample import resample
from voxserve.models.base import EndOfTurnModel, Transcript, VadModel
from voxserve.protocol import client_events as ce
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.ids import new_id
from voxserve.protocol.items import ContentPart, Item, parse_client_item
from voxserve.protocol.server_events import (
    ClearedEvent, CommittedEvent, ErrorDetail, ErrorEvent, ItemAddedEvent, ItemDeletedEvent,
    ItemDoneEvent, ItemRetrievedEvent, ItemTruncatedEvent, OutputAudioBufferClearedEvent,
    ResponseTimingEvent, ServerEvent, SessionCreatedEvent, SessionUpdatedEvent, SpeechStartedEvent,
    SpeechStoppedEvent, TimeoutTriggeredEvent, TranscriptionCompletedEvent, TranscriptionDeltaEvent,
    TranscriptionFailedEvent, WarningDetail, WarningEvent,
)
from voxserve.protocol.session_config import (
    SessionConfig, TurnDetection, VoiceTable, apply_update, flat_format_name, parse_max_tokens,
    parse_tool_choice, parse_tools,
)
from voxserve.session.conversation import Conversation
from voxserve.session.end_of_turn import (
    is_backchannel, remove_fillers, required_silence_ms, text_complete,
)
from voxserve.session.input_buffer import InputBuffer, ms, samples_of
from voxserve.session.pipeline import Pipeline
from voxserve.session.response import CancelReason, Response, ResponseOptions
from voxserve.session.observer import NullObserver, SessionObserver
from voxserve.session.turn import Turn
from voxserve.session.turn_detector import Pause, Resume, SpeechStart, SpeechStop, TurnDetector
from voxserve.tracing import current, tracer

log = logging.getLogger("voxserve.session")

MIN_COMMIT_MS = 100  # shorter buffers are refused as empty, as the reference service does


class Transport(Protocol):
    async def receive(self) -> str | bytes | None: ...  # None once the client has gone

    async def send(self, text: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


@dataclass
class SessionDefaults:
    """Server-side session settings (from the options file)."""

    system_prompt: str
    voices: dict[str, str]
    default_voice: str = "alloy"
    model_name: str = "voxserve-default"
    max_buffer_seconds: float = 120.0
    min_speech_ms: int = 100
    # The first pause: after this much silence the ASR decode starts, before the turn is
    # decided (its result is used if the user does not resume), and the semantic modes judge
    # the turn.
    pause_ms: int = 200
    # Barge-in: user speech during an answer pauses its audio at once; speech that goes on for
    # this long confirms the interruption (everything in flight is cancelled). A shorter burst
    # is transcribed: if it holds no content words (a cough, "mhm", "okay") the answer resumes.
    # 0 cancels on the first speech, as the reference service does.
    interrupt_min_ms: int = 600
    session_max_seconds: float = 3600.0
    outbox_size: int = 512
    model_names: dict[str, str] = field(default_factory=dict)  # span attributes: asr/llm/tts


E = TypeVar("E", bound=ce._ClientEvent)
T = TypeVar("T")
_Handler = Callable[["RealtimeSession", Any], Awaitable[None]]
_HANDLERS: dict[type, _Handler] = {}


def handles(event_type: type[E]) -> Callable[[Callable[[RealtimeSession, E], Awaitable[None]]],
                                             Callable[[RealtimeSession, E], Awaitable[None]]]:
    def register(fn: Callable[[RealtimeSession, E], Awaitable[None]]
                 ) -> Callable[[RealtimeSession, E], Awaitable[None]]:
        if event_type in _HANDLERS:
            raise RuntimeError(f"two handlers for {event_type.__name__}")
        _HANDLERS[event_type] = fn
        return fn
    return register


class RealtimeSession:
    def __init__(self, dialect: Dialect, pipeline: Pipeline, vad_factory: Callable[[], VadModel],
                 defaults: SessionDefaults, model: str | None = None,
                 observer: SessionObserver | None = None,
                 eot_model: EndOfTurnModel | None = None) -> None:
        self.id = new_id("sess")
        self.observer: SessionObserver = observer or NullObserver()
        self._span: Any = None  # the session's span; each turn's trace links to it
        self._turn: Turn | None = None  # the turn being formed (from the first pause on)
        self._client_turn: str | None = None  # Voice Live client-driven turn in progress
        self._idle_from: int | None = None  # sample where the agent went quiet (idle timeout)
        self.dialect = dialect
        self.pipeline = pipeline
        self.defaults = defaults
        self.voices = VoiceTable(defaults.voices)
        self.config = SessionConfig(model=model or defaults.model_name, voice=defaults.default_voice)
        self.expires_at = int(time.time() + defaults.session_max_seconds)
        self.conversation = Conversation()
        self.buffer = InputBuffer(defaults.max_buffer_seconds)
        self._vad_factory = vad_factory
        self._detector: TurnDetector | None = None
        self._speech_item: str | None = None
        self._speech_start = 0
        # a speculative decode started at the first pause: (task, end sample of its audio)
        self._early_asr: tuple[asyncio.Task[Transcript | Exception], int] | None = None
        self._judge: asyncio.Task[None] | None = None  # semantic end-of-turn judgement of a pause
        self._audio_lock = asyncio.Lock()  # the detector is driven by audio and by the judge
        self.eot_model = eot_model
        # an interruption being judged: the held response and the onset of the user's speech
        self._barge: tuple[Response, int] | None = None
        self._audio_produced = False
        self._active: tuple[Response, asyncio.Task[None]] | None = None
        self._last_response_id: str | None = None
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue(defaults.outbox_size)
        self._tg: asyncio.TaskGroup | None = None
        self._closed = False
        self._sync_detector()

    # ---- transport -----------------------------------------------------------------------

    async def serve(self, transport: Transport) -> None:
        self._span = tracer().start_span("voxserve.session", attributes={
            "voxserve.session_id": self.id, "voxserve.dialect": self.dialect.value})
        self.observer.session_opened(self.dialect.value)
        log.info("session.open session=%s dialect=%s model=%s", self.id, self.dialect.value,
                 self.config.model)
        try:
            await self._serve(transport)
        finally:
            self.observer.session_closed(self.dialect.value)
            self._span.end()
            log.info("session.close session=%s", self.id)

    async def _serve(self, transport: Transport) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            writer = tg.create_task(self._writer(transport))
            timer = tg.create_task(self._expire(transport))
            await self.send(SessionCreatedEvent(session_id=self.id, expires_at=self.expires_at,
                                                config=self.config))
            self._background(self._warm())
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

    async def _writer(self, transport: Transport) -> None:
        while (text := await self._outbox.get()) is not None:
            await transport.send(text)

    async def _expire(self, transport: Transport) -> None:
        await asyncio.sleep(max(0.0, self.expires_at - time.time()))
        await self.send_error(ProtocolError(ErrorCode.SESSION_EXPIRED,
                                            "the session reached its maximum duration"))
        await asyncio.sleep(0.5)  # let the writer flush the error before the close frame
        await transport.close(1000, "session expired")

    async def send(self, event: ServerEvent) -> None:
        """Render now (later mutations of the event's objects must not leak) and queue."""
        if self._closed:
            return
        if event.extension and not self.config.response_timing:
            return
        wire = event.render(self.dialect)
        if wire is not None:
            await self._outbox.put(json.dumps(wire, separators=(",", ":")))

    async def send_error(self, err: ProtocolError, event_id: str | None = None) -> None:
        self.observer.error(str(err.code))
        log.info("error session=%s code=%s param=%s message=%s", self.id, err.code, err.param,
                 err.message)
        await self.send(ErrorEvent(error=ErrorDetail(type=err.type, code=str(err.code),
                                                     message=err.message, param=err.param,
                                                     event_id=event_id)))

    async def handle_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self.send_error(ProtocolError(
                ErrorCode.INVALID_JSON, "binary frames are not part of the protocol; send JSON "
                "text frames with base64 audio"))
            return
        try:
            event = ce.parse_client_event(message)
        except ce.ParsedError as err:
            await self.send_error(err, err.event_id)
            return
        if event.type in ce.VOICE_LIVE_ONLY and self.dialect is not Dialect.VOICE_LIVE:
            await self.send_error(ProtocolError(
                ErrorCode.UNKNOWN_EVENT_TYPE,
                f"{event.type} is a Voice Live event; connect to /voice-live/realtime", "type"),
                event.event_id)
            return
        try:
            await _HANDLERS[type(event)](self, event)
        except ProtocolError as err:
            await self.send_error(err, event.event_id)
        except Exception as exc:  # a bug or a model failure must not end the session
            log.exception("session %s: handling %s failed", self.id, event.type)
            await self.send_error(ProtocolError(ErrorCode.SERVER_ERROR,
                                                f"internal error handling {event.type}: {exc}",
                                                type="server_error"), event.event_id)

    def _background(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A task owned by the session's task group. The coroutine must not raise: an escaping
        exception would cancel the whole session (by design for the writer, a bug elsewhere)."""
        assert self._tg is not None, "session is not being served"
        return self._tg.create_task(coro)

    async def _shutdown(self) -> None:
        # The client is gone: nothing more is queued for it (a close-out written to a dead
        # socket would only fail the writer), but in-flight work is still cancelled everywhere.
        self._closed = True
        self._drop_speculation()
        if self._active is not None:
            await self._cancel_response("client_cancelled")
        for future in self.conversation.transcripts.values():
            future.cancel()

    async def _warm(self) -> None:
        try:
            await self.pipeline.warm([{"role": "system", "content": self._system_prompt()}])
        except Exception:  # warming is an optimisation; a failure shows up on the next turn
            log.warning("session %s: LLM prefix warm-up failed", self.id, exc_info=True)

    def _system_prompt(self) -> str:
        return self.config.instructions or self.defaults.system_prompt

    # ---- turn detection ------------------------------------------------------------------

    def _sync_detector(self) -> None:
        td = self.config.turn_detection
        if td is None:
            self._detector = None
            return
        if self._detector is None:
            self._detector = TurnDetector(self._vad_factory(), td, self.defaults.min_speech_ms,
                                          pause_ms=self.defaults.pause_ms)
            self._detector.reset(self.buffer.total_samples)
        else:
            self._detector.options = td

    async def _on_audio(self, samples: np.ndarray) -> None:
        async with self._audio_lock:
            await self._on_audio_locked(samples)

    async def _on_audio_locked(self, samples: np.ndarray) -> None:
        # a client-driven turn bypasses the VAD: the client says where the turn ends
        detector = None if self._client_turn is not None else self._detector
        if detector is None:
            if self.buffer.overflowing():
                self.buffer.drop_before(self.buffer.total_samples
                                        - samples_of(self.defaults.max_buffer_seconds * 1000))
                raise ProtocolError(ErrorCode.AUDIO_TOO_LARGE,
                                    f"input audio buffer is over {self.defaults.max_buffer_seconds:.0f}"
                                    " s; commit or clear it (oldest audio dropped)")
            return
        for event in detector.feed(samples):
            if isinstance(event, SpeechStart):
                await self._speech_started(event.sample, detector.options)
            elif isinstance(event, SpeechStop):
                await self._speech_stopped(event.sample, detector.options, event.silence_ms)
            elif isinstance(event, Pause):
                # The user stopped speaking (for now): the turn's trace starts at the end of
                # speech, and the decode of what was said so far starts inside it; both are
                # dropped if speech resumes.
                self._turn = self._begin_turn(self.buffer.arrival_time(event.speech_end))
                audio = self.buffer.audio(self._speech_start, event.sample)
                self._drop_speculation()
                self._turn.asr_start = time.monotonic()
                with current(self._turn.span):
                    task = self._background(self._try_transcribe(audio))
                    if detector.semantic:
                        self._judge = self._background(self._judge_pause(detector, audio, task))
                self._early_asr = (task, event.sample)
            elif isinstance(event, Resume):
                self._drop_speculation()
                self._turn = None  # never ended, so never exported
        if self._barge is not None and detector.voiced_samples >= samples_of(
                self.defaults.interrupt_min_ms):
            await self._cancel_response("turn_detected")  # long enough: a real interruption
        if not detector.speaking:
            await self._check_idle(detector.options)
            keep = samples_of(detector.options.prefix_padding_ms) + samples_of(100)
            self.buffer.drop_before(self.buffer.total_samples - keep)
        elif self.buffer.overflowing():  # an endless "turn" (e.g. constant noise): cut it here
            await self._speech_stopped(self.buffer.total_samples, detector.options)
            detector.reset(self.buffer.total_samples)

    def reset_input(self) -> None:
        """Forget the input audio and any turn being formed from it (clear, a new client turn)."""
        self.buffer.clear()
        self._speech_item = None
        self._turn = None
        self._drop_speculation()
        if self._detector is not None:
            self._detector.reset(self.buffer.total_samples)

    def _drop_speculation(self) -> None:
        if self._early_asr is not None:
            self._early_asr[0].cancel()  # ServePipeline cancels the Serve call behind it
            self._early_asr = None
        if self._judge is not None:
            self._judge.cancel()
            self._judge = None

    async def _judge_pause(self, detector: TurnDetector, audio: np.ndarray,
                           decode: asyncio.Task[Transcript | Exception]) -> None:
        """Semantic end of turn for one pause: the audio model first (tens of ms), then the
        transcript of the decode started at the same pause; each answer sets the silence that
        ends the turn. Cancelled when the user resumes speaking."""
        waits = detector.waits
        if waits is None:
            return
        p: float | None = None
        t0 = time.monotonic()
        if self.eot_model is not None:
            try:
                p = await asyncio.to_thread(self.eot_model.probability, audio)
            except Exception:
                log.warning("session %s: end-of-turn model failed", self.id, exc_info=True)
        await self._require_silence(detector, required_silence_ms(waits, p, None))
        await asyncio.wait({decode})  # not `await decode`: cancelling us must not cancel it
        result = decode.result() if not decode.cancelled() else None
        text_ok = text_complete(result.text) if isinstance(result, Transcript) else None
        wait = required_silence_ms(waits, p, text_ok)
        log.info("end_of_turn.judged session=%s audio_p=%s text_complete=%s wait_ms=%d "
                 "judge_ms=%.0f", self.id, None if p is None else round(p, 3), text_ok, wait,
                 (time.monotonic() - t0) * 1000)
        if self._turn is not None and self._turn.span is not None:
            self._turn.span.set_attributes({"voxserve.eot.audio_p": -1.0 if p is None else p,
                                            "voxserve.eot.text_complete": str(text_ok),
                                            "voxserve.eot.wait_ms": wait})
        await self._require_silence(detector, wait)

    async def _require_silence(self, detector: TurnDetector, wait_ms: int) -> None:
        async with self._audio_lock:
            detector.require_silence(wait_ms)
            if (stop := detector.end_if_due()) is not None:
                if self._judge is asyncio.current_task():
                    self._judge = None  # ending the turn below must not cancel this task
                await self._speech_stopped(stop.sample, detector.options, stop.silence_ms)

    async def _transcribe_audio(self, audio: np.ndarray) -> Transcript:
        cfg = self.config.transcription
        language = cfg.language if cfg and cfg.language and "," not in cfg.language else None
        td = self.config.turn_detection
        if language is None and td is not None and td.languages and len(td.languages) == 1:
            language = td.languages[0].split("-")[0].lower()  # Voice Live "en-US" -> "en"
        prompt = None
        if cfg is not None:
            prompt = cfg.prompt or (", ".join(cfg.phrase_list) if cfg.phrase_list else None)
        return await self.pipeline.transcribe(audio, language, prompt)

    async def _try_transcribe(self, audio: np.ndarray) -> Transcript | Exception:
        """A decode whose failure is returned, not raised: an exception escaping a task of the
        session's task group would end the whole session."""
        try:
            return await self._transcribe_audio(audio)
        except Exception as exc:
            return exc

    async def _check_idle(self, td: TurnDetection) -> None:
        """GA idle timeout: no speech for `idle_timeout_ms` after the agent finished speaking
        (on the audio clock) ends a silent user turn and asks for a response."""
        if td.idle_timeout_ms is None or self._idle_from is None or self._active is not None:
            return
        now = self.buffer.total_samples
        if now - self._idle_from < samples_of(td.idle_timeout_ms):
            return
        idle_from, self._idle_from = self._idle_from, None
        item_id = new_id("item")
        await self.send(TimeoutTriggeredEvent(audio_start_ms=ms(idle_from), audio_end_ms=ms(now),
                                              item_id=item_id))
        self._turn = self._begin_turn(time.monotonic())
        self._turn.decided = self._turn.speech_end
        # only the prefix-padding window of the silence is still held; it is committed as an empty
        # user turn, not transcribed (Whisper tends to hallucinate words into silence)
        await self._commit(item_id, self.buffer.audio(max(idle_from, self.buffer.start_sample), now),
                           silent=True)
        if td.create_response:
            await self._respond(self._response_options(None), cancel_previous=True)

    async def _speech_started(self, sample: int, td: TurnDetection) -> None:
        self._idle_from = None
        start = max(self.buffer.start_sample, sample - samples_of(td.prefix_padding_ms))
        self._speech_item = new_id("item")
        self._speech_start = start
        await self.send(SpeechStartedEvent(audio_start_ms=ms(start), item_id=self._speech_item))
        if not td.interrupt_response or self._active is None:
            return
        response = self._active[0]
        if self.defaults.interrupt_min_ms > 0 and response.options.audio_output:
            response.hold()  # silent at once; cancelled or resumed once the burst is judged
            self._barge = (response, sample)
        else:
            await self._cancel_response("turn_detected")

    def _begin_turn(self, speech_end: float) -> Turn:
        return Turn.begin(speech_end, self.id, self._span, **{
            f"voxserve.{k}_model": v for k, v in self.defaults.model_names.items()})

    async def _speech_stopped(self, sample: int, td: TurnDetection,
                              silence_ms: int | None = None) -> None:
        if self._turn is None:
            self._turn = self._begin_turn(self.buffer.arrival_time(sample))
        turn = self._turn
        turn.decided = time.monotonic()
        turn.stage_span("voxserve.end_of_turn", turn.speech_end, turn.decided,
                        **{"voxserve.silence_ms": silence_ms or td.silence_duration_ms,
                           "voxserve.turn_detection": td.type})
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        await self.send(SpeechStoppedEvent(audio_end_ms=ms(sample), item_id=item_id))
        audio = self.buffer.audio(self._speech_start)
        early, self._early_asr = self._early_asr, None
        judge, self._judge = self._judge, None
        if judge is not None and judge is not asyncio.current_task():
            judge.cancel()  # the turn ended: a late verdict must not touch the next pause
        # the speculative decode covers the whole turn when no speech came after it started
        decoded = early[0] if early else None
        if self._barge is not None:  # a short burst over the agent: words or a backchannel?
            self._turn = None
            self.buffer.clear()
            self._background(self._settle_barge(item_id, audio, decoded, td))
            return
        await self._commit(item_id, audio, decoded)
        if td.create_response:
            await self._respond(self._response_options(None), cancel_previous=True)

    async def _settle_barge(self, item_id: str, audio: np.ndarray,
                            decoded: asyncio.Task[Transcript | Exception] | None,
                            td: TurnDetection) -> None:
        """A burst shorter than `interrupt_min_ms` spoke over the agent. With no content words
        it was a backchannel or noise: the held answer resumes and the burst is dropped (its
        `speech_started` item is never committed). With words it was a real interruption: the
        answer is cancelled and the burst becomes the user's turn."""
        barge = self._barge
        task = decoded or self._background(self._try_transcribe(audio))
        await asyncio.wait({task})
        result = task.result() if not task.cancelled() else None
        text = result.text if isinstance(result, Transcript) else ""
        if barge is None or self._barge is not barge:
            return  # settled meanwhile (confirmed by longer speech, or cancelled)
        if is_backchannel(text):
            if self._detector is not None and self._detector.speaking:
                return  # more speech is under way; its own length or words decide
            self._barge = None
            barge[0].resume()
            self.observer.false_interruption()
            log.info("false_interruption session=%s response=%s heard=%r", self.id, barge[0].id,
                     text)
            return
        await self._cancel_response("turn_detected")
        if self._detector is not None and self._detector.speaking:
            return  # the user is still talking: that turn, when it ends, gets the answer
        self._turn = self._begin_turn(self.buffer.arrival_time(self.buffer.total_samples))
        self._turn.decided = time.monotonic()
        await self._commit(item_id, audio, task, clear=False)
        if td.create_response:
            await self._respond(self._response_options(None), cancel_previous=True)

    async def _commit(self, item_id: str, audio: np.ndarray,
                      decoded: asyncio.Task[Transcript | Exception] | None = None,
                      silent: bool = False, clear: bool = True) -> None:
        if clear:
            self.buffer.clear()
        if self._turn is None:  # a manual commit: the turn starts now
            self._turn = self._begin_turn(time.monotonic())
            self._turn.decided = self._turn.speech_end
        self._turn.audio_seconds = audio.size / 16000
        self.observer.audio_seconds("in", audio.size / 16000)
        item = Item(id=item_id, type="message", role="user",
                    content=[ContentPart(type="input_audio", transcript=None)])
        previous = self.conversation.add(item)
        await self.send(CommittedEvent(previous_item_id=previous, item_id=item_id))
        await self.send(ItemAddedEvent(previous_item_id=previous, item=item))
        await self.send(ItemDoneEvent(previous_item_id=previous, item=item))
        if silent:
            item.content[0].transcript = ""
        else:
            self._transcribe(item, audio, decoded)

    def _transcribe(self, item: Item, audio: np.ndarray,
                    decoded: asyncio.Task[Transcript | Exception] | None = None) -> None:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.conversation.transcripts[item.id] = future
        turn = self._turn
        with current(turn.span if turn else None):
            self._background(self._run_transcription(item, audio, future, decoded, turn))

    async def _run_transcription(self, item: Item, audio: np.ndarray, future: asyncio.Future[str],
                                 decoded: asyncio.Task[Transcript | Exception] | None,
                                 turn: Turn | None = None) -> None:
        cfg = self.config.transcription
        try:
            if turn is not None and decoded is None:
                turn.asr_start = time.monotonic()
            result = await (decoded if decoded is not None else self._try_transcribe(audio))
            if turn is not None:
                turn.asr_done = time.monotonic()
                turn.stage_span("voxserve.asr", turn.asr_start, turn.asr_done,
                                **{"voxserve.early": decoded is not None})
            if isinstance(result, Exception):
                raise result
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            log.warning("session %s: transcription of %s failed: %s", self.id, item.id, exc)
            if not future.done():
                future.set_result("")
            detail = ErrorDetail(type="server_error", code="asr_failed",
                                 message=f"transcription failed: {exc}")
            if cfg is not None:
                await self.send(TranscriptionFailedEvent(item_id=item.id, content_index=0,
                                                         error=detail))
            else:
                await self.send(ErrorEvent(error=detail))
            return
        text = result.text.strip()
        td = self.config.turn_detection
        if td is not None and td.remove_filler_words:
            text = remove_fillers(text)
        item.content[0].transcript = text
        if not future.done():
            future.set_result(text)
        if cfg is not None:
            if text:
                await self.send(TranscriptionDeltaEvent(item_id=item.id, content_index=0,
                                                        delta=text))
            await self.send(TranscriptionCompletedEvent(item_id=item.id, content_index=0,
                                                        transcript=text,
                                                        audio_seconds=result.audio_seconds))

    # ---- responses -----------------------------------------------------------------------

    def _response_options(self, overrides: dict[str, Any] | None) -> ResponseOptions:
        cfg = self.config
        o = overrides or {}
        param = "response"
        voice = cfg.voice
        audio_output = cfg.audio_output
        if self.dialect is Dialect.GA:
            if "output_modalities" in o:
                if o["output_modalities"] not in (["audio"], ["text"]):
                    raise ProtocolError(ErrorCode.INVALID_VALUE,
                                        "output_modalities must be ['audio'] or ['text']",
                                        f"{param}.output_modalities")
                audio_output = o["output_modalities"] == ["audio"]
            out = (o.get("audio") or {}).get("output") or {}
            if "voice" in out:
                voice = out["voice"] if isinstance(out["voice"], str) else str(out["voice"])
        else:
            if "modalities" in o:
                mods = o["modalities"]
                if not isinstance(mods, list) or "text" not in mods:
                    raise ProtocolError(ErrorCode.INVALID_VALUE,
                                        "modalities must be ['text'] or ['text', 'audio']",
                                        f"{param}.modalities")
                audio_output = "audio" in mods
            if "voice" in o:
                v = o["voice"]
                voice = v if isinstance(v, str) else str((v or {}).get("name", cfg.voice))
        speaker = self.voices.resolve(voice, f"{param}.voice")
        instructions = o.get("instructions", None)
        if instructions is not None and not isinstance(instructions, str):
            raise ProtocolError(ErrorCode.INVALID_TYPE, "instructions must be a string",
                                f"{param}.instructions")
        tools = cfg.tools
        if "tools" in o:
            tools = parse_tools(o["tools"], f"{param}.tools")
        choice = parse_tool_choice(o["tool_choice"], f"{param}.tool_choice") \
            if "tool_choice" in o else cfg.tool_choice
        max_tokens = cfg.max_output_tokens
        for key in ("max_output_tokens", "max_response_output_tokens"):
            if key in o:
                max_tokens = parse_max_tokens(o[key], f"{param}.{key}")
        temperature = cfg.temperature
        if "temperature" in o and self.dialect is not Dialect.GA:
            t = o["temperature"]
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 2:
                raise ProtocolError(ErrorCode.INVALID_VALUE, "temperature must be 0..2",
                                    f"{param}.temperature")
            temperature = float(t)
        in_conversation = o.get("conversation", "auto") != "none"
        context_items = None
        if "input" in o or "input_items" in o:
            raw_items = o.get("input", o.get("input_items"))
            if not isinstance(raw_items, list):
                raise ProtocolError(ErrorCode.INVALID_TYPE, "input must be an array",
                                    f"{param}.input")
            context_items = [self._input_item(x) for x in raw_items]
        metadata = o.get("metadata")
        return ResponseOptions(
            instructions=instructions if instructions is not None else self._system_prompt(),
            audio_output=audio_output, voice=voice, speaker=speaker, speed=cfg.speed,
            output_format=cfg.output_format,
            output_format_name=flat_format_name(cfg.output_format, output=True),
            tools=tools, tool_choice=choice, temperature=temperature,
            max_output_tokens=max_tokens, in_conversation=in_conversation,
            context_items=context_items,
            metadata=metadata if isinstance(metadata, dict) else None)

    def _input_item(self, raw: Any) -> Item:
        if isinstance(raw, dict) and raw.get("type") == "item_reference":
            return self.conversation.get(str(raw.get("id")), "response.input.id")
        return parse_client_item(raw)

    async def _respond(self, options: ResponseOptions, cancel_previous: bool) -> None:
        if self._active is not None:
            if not cancel_previous:
                raise ProtocolError(ErrorCode.ACTIVE_RESPONSE,
                                    f"response {self._active[0].id} is still in progress")
            await self._cancel_response("client_cancelled")
        turn, self._turn = self._turn, None
        if turn is None:  # response.create with no spoken turn: the request is the turn's start
            turn = self._begin_turn(time.monotonic())
            turn.decided = turn.speech_end
        response = Response(options, self.conversation, self.pipeline, self.send,
                            self._system_prompt(), on_audio=self._mark_audio, turn=turn)
        with current(turn.span):
            task = self._background(self._run_response(response))
        self._active = (response, task)
        self._last_response_id = response.id

    async def _run_response(self, response: Response) -> None:
        try:
            await response.run()
        finally:
            if self._active is not None and self._active[0] is response:
                self._active = None
                self._idle_from = self.buffer.total_samples
            await self._report(response)

    async def _report(self, response: Response) -> None:
        """Metrics, one structured log line and (opt-in) the timing event for a finished turn."""
        breakdown = response.breakdown()
        for stage, ms_ in breakdown.items():
            if ms_ is not None and stage != "total":
                self.observer.stage(stage, ms_)
        self.observer.turn_done(response.status)
        self.observer.tokens("input", response.usage.input_text_tokens)
        self.observer.tokens("cached", response.usage.cached_tokens)
        self.observer.tokens("output", response.usage.output_text_tokens)
        self.observer.audio_seconds("out", response.audio_seconds_out)
        log.info("turn.done session=%s response=%s status=%s %s", self.id, response.id,
                 response.status, " ".join(f"{k}_ms={v}" for k, v in breakdown.items()))
        if self.config.response_timing:
            await self.send(ResponseTimingEvent(response_id=response.id, status=response.status,
                                                **{f"{k}_ms": v for k, v in breakdown.items()}))

    def _mark_audio(self) -> None:
        self._audio_produced = True

    async def _cancel_response(self, reason: CancelReason) -> None:
        if self._active is None:
            return
        response, task = self._active
        self._active = None
        self._barge = None
        if reason == "turn_detected":
            self.observer.barge_in()
            log.info("barge_in session=%s response=%s", self.id, response.id)
        response.mark_cancelled(reason)
        task.cancel()
        await asyncio.wait({task}, timeout=10.0)
        if not task.done():
            log.error("session %s: response %s did not stop within 10 s", self.id, response.id)
        elif not response.done.is_set():
            # cancelled before its task first ran: it still gets its created/done pair
            await response.finish_unstarted()
            await self._report(response)
        td = self.config.turn_detection
        if reason == "turn_detected" and td is not None and td.auto_truncate:
            await self._auto_truncate(response)

    async def _auto_truncate(self, response: Response) -> None:
        """Voice Live `auto_truncate`: cut the interrupted answer where the client had played
        it, estimated as real-time playback from the first audio sent (we do not see playback)."""
        item_id = response.spoken_item_id
        spoken = self.conversation.spoken.get(item_id or "")
        if item_id is None or spoken is None or not response.timings.first_audio_sent:
            return
        played = min(spoken.duration_ms,
                     (time.monotonic() - response.timings.first_audio_sent) * 1000)
        item = self.conversation.get(item_id)
        item.content[0].transcript = spoken.text_until(played)
        await self.send(ItemTruncatedEvent(item_id=item_id, content_index=0,
                                           audio_end_ms=int(played)))


# ---- handlers ---------------------------------------------------------------------------------


@handles(ce.SessionUpdateEvent)
async def _session_update(s: RealtimeSession, ev: ce.SessionUpdateEvent) -> None:
    result = apply_update(s.config, ev.session, s.dialect, s.voices, s._audio_produced)
    instructions_changed = result.config.instructions != s.config.instructions
    s.config = result.config
    s._sync_detector()
    for message, param in result.warnings:
        await s.send(WarningEvent(warning=WarningDetail(message=message, code="unsupported",
                                                        param=param)))
    await s.send(SessionUpdatedEvent(session_id=s.id, expires_at=s.expires_at, config=s.config))
    if instructions_changed:
        s._background(s._warm())


@handles(ce.InputAudioBufferAppendEvent)
async def _append(s: RealtimeSession, ev: ce.InputAudioBufferAppendEvent) -> None:
    try:
        data = b64decode_strict(ev.audio)
        samples = s.buffer.append(data, s.config.input_format)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_VALUE, str(exc), "audio") from None
    await s._on_audio(samples)


@handles(ce.InputAudioBufferCommitEvent)
async def _commit(s: RealtimeSession, ev: ce.InputAudioBufferCommitEvent) -> None:
    if ms(s.buffer.held_samples) < MIN_COMMIT_MS:
        raise ProtocolError(ErrorCode.COMMIT_EMPTY,
                            f"buffer too small: {ms(s.buffer.held_samples)} ms of audio, "
                            f"at least {MIN_COMMIT_MS} ms needed")
    start = s._speech_start if s._speech_item else s.buffer.start_sample
    item_id = s._speech_item or new_id("item")
    s._drop_speculation()
    s._speech_item = None
    audio = s.buffer.audio(start)
    if s._detector is not None:
        s._detector.reset(s.buffer.total_samples)
    await s._commit(item_id, audio)


@handles(ce.InputAudioBufferClearEvent)
async def _clear(s: RealtimeSession, ev: ce.InputAudioBufferClearEvent) -> None:
    s.reset_input()
    await s.send(ClearedEvent())


@handles(ce.ConversationItemCreateEvent)
async def _item_create(s: RealtimeSession, ev: ce.ConversationItemCreateEvent) -> None:
    item = parse_client_item(ev.item)
    audio_part = next((p for p in item.content if p.type == "input_audio" and p.audio), None)
    audio = None
    if audio_part is not None and audio_part.transcript is None:
        try:
            data = b64decode_strict(audio_part.audio or "")
            fmt = s.config.input_format
            audio = resample(fmt.decode(data), fmt.rate, 16000)
        except ValueError as exc:
            raise ProtocolError(ErrorCode.INVALID_VALUE, str(exc), "item.content.audio") from None
    previous = s.conversation.add(item, ev.previous_item_id)
    await s.send(ItemAddedEvent(previous_item_id=previous, item=item))
    await s.send(ItemDoneEvent(previous_item_id=previous, item=item))
    if audio is not None:
        s._transcribe(item, audio)


@handles(ce.ConversationItemDeleteEvent)
async def _item_delete(s: RealtimeSession, ev: ce.ConversationItemDeleteEvent) -> None:
    s.conversation.delete(ev.item_id)
    await s.send(ItemDeletedEvent(item_id=ev.item_id))


@handles(ce.ConversationItemRetrieveEvent)
async def _item_retrieve(s: RealtimeSession, ev: ce.ConversationItemRetrieveEvent) -> None:
    await s.send(ItemRetrievedEvent(item=s.conversation.get(ev.item_id)))


@handles(ce.ConversationItemTruncateEvent)
async def _item_truncate(s: RealtimeSession, ev: ce.ConversationItemTruncateEvent) -> None:
    item = s.conversation.get(ev.item_id)
    if item.type != "message" or item.role != "assistant":
        raise ProtocolError(ErrorCode.INVALID_VALUE, "only assistant messages can be truncated",
                            "item_id")
    if ev.content_index >= len(item.content) or item.content[ev.content_index].type != "audio":
        raise ProtocolError(ErrorCode.INVALID_VALUE,
                            f"content {ev.content_index} of {ev.item_id} is not audio",
                            "content_index")
    spoken = s.conversation.spoken.get(item.id)
    duration = spoken.duration_ms if spoken else 0.0
    if ev.audio_end_ms > duration + 1:
        raise ProtocolError(ErrorCode.TRUNCATE_INVALID_AUDIO_END,
                            f"audio_end_ms {ev.audio_end_ms} is past the item's audio "
                            f"({duration:.0f} ms)", "audio_end_ms")
    if spoken is not None:
        item.content[ev.content_index].transcript = spoken.text_until(ev.audio_end_ms)
    await s.send(ItemTruncatedEvent(item_id=item.id, content_index=ev.content_index,
                                    audio_end_ms=ev.audio_end_ms))


@handles(ce.ResponseCreateEvent)
async def _response_create(s: RealtimeSession, ev: ce.ResponseCreateEvent) -> None:
    overrides = dict(ev.response or {})
    cancel_previous = False
    if s.dialect is Dialect.VOICE_LIVE:
        cancel_previous = overrides.pop("cancel_previous", True) is not False
        if ev.additional_instructions:
            base = overrides.get("instructions") or s._system_prompt()
            overrides["instructions"] = f"{base}\n{ev.additional_instructions}"
    options = s._response_options(overrides)
    await s._respond(options, cancel_previous=cancel_previous)


@handles(ce.ResponseCancelEvent)
async def _response_cancel(s: RealtimeSession, ev: ce.ResponseCancelEvent) -> None:
    active = s._active
    if active is None or (ev.response_id is not None and ev.response_id != active[0].id):
        raise ProtocolError(ErrorCode.CANCEL_NOT_ACTIVE,
                            "there is no active response" if active is None
                            else f"response {ev.response_id} is not the active response",
                            "response_id" if ev.response_id else None)
    await s._cancel_response("client_cancelled")


@handles(ce.OutputAudioBufferClearEvent)
async def _output_clear(s: RealtimeSession, ev: ce.OutputAudioBufferClearEvent) -> None:
    # Over WebSocket the client owns playback; clearing means "stop this answer", so the
    # active response (if any) is cancelled before the acknowledgement.
    response_id = s._active[0].id if s._active else s._last_response_id
    await s._cancel_response("client_cancelled")
    await s.send(OutputAudioBufferClearedEvent(response_id=response_id))


# ---- Voice Live client-driven turns ---------------------------------------------------------


def _check_turn(s: RealtimeSession, turn_id: str) -> None:
    if s._client_turn is None:
        raise ProtocolError(ErrorCode.INVALID_VALUE, "no input audio turn is open; send "
                            "input_audio.turn.start first", "turn_id")
    if turn_id != s._client_turn:
        raise ProtocolError(ErrorCode.INVALID_VALUE,
                            f"turn {turn_id!r} is not the open turn {s._client_turn!r}", "turn_id")


@handles(ce.InputAudioTurnStartEvent)
async def _turn_start(s: RealtimeSession, ev: ce.InputAudioTurnStartEvent) -> None:
    if s._client_turn is not None:
        raise ProtocolError(ErrorCode.INVALID_VALUE,
                            f"turn {s._client_turn!r} is still open; end or cancel it first",
                            "turn_id")
    s._client_turn = ev.turn_id
    s.reset_input()


@handles(ce.InputAudioTurnAppendEvent)
async def _turn_append(s: RealtimeSession, ev: ce.InputAudioTurnAppendEvent) -> None:
    _check_turn(s, ev.turn_id)
    try:
        samples = s.buffer.append(b64decode_strict(ev.audio), s.config.input_format)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.INVALID_VALUE, str(exc), "audio") from None
    await s._on_audio(samples)


@handles(ce.InputAudioTurnEndEvent)
async def _turn_end(s: RealtimeSession, ev: ce.InputAudioTurnEndEvent) -> None:
    _check_turn(s, ev.turn_id)
    s._client_turn = None
    if ms(s.buffer.held_samples) < MIN_COMMIT_MS:
        s.buffer.clear()
        raise ProtocolError(ErrorCode.COMMIT_EMPTY,
                            f"turn {ev.turn_id!r} holds {ms(s.buffer.held_samples)} ms of audio, "
                            f"at least {MIN_COMMIT_MS} ms needed")
    audio = s.buffer.audio()
    await s._commit(new_id("item"), audio)
    td = s.config.turn_detection
    if td is None or td.create_response:
        await s._respond(s._response_options(None), cancel_previous=True)


@handles(ce.InputAudioTurnCancelEvent)
async def _turn_cancel(s: RealtimeSession, ev: ce.InputAudioTurnCancelEvent) -> None:
    _check_turn(s, ev.turn_id)
    s._client_turn = None
    s.buffer.clear()
    await s.send(ClearedEvent())


@handles(ce.InputAudioClearEvent)
async def _input_audio_clear(s: RealtimeSession, ev: ce.InputAudioClearEvent) -> None:
    s.reset_input()
    await s.send(ClearedEvent())
