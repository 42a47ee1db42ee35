"""The listener: what the user's audio says about the turn, reported as typed `Heard` events.

It owns the input buffer (decode, resample, memory policy), the VAD turn detector, the Voice Live
client-driven turn and the idle clock. At the first pause of a turn it opens one `PauseScope`:
the early decode of the turn so far and, in the semantic modes, the judgement of the pause (audio
model, then the decode's words), both cancelled by the scope's one `cancel()` when speech resumes.

It knows nothing of responses or the wire: it reports to the one `on_heard` consumer it is given
(turn taking), which decides what a heard event means for the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxserve.audio.formats import AudioFormat
from voxserve.audio.front_end import FrontEnd
from voxserve.config import VadOptions
from voxserve.models.base import EndOfTurnModel, Transcript, VadModel
from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.ids import new_id
from voxserve.protocol.session_config import TurnDetection
from voxserve.session.end_of_turn import Waits, required_silence_ms, text_complete
from voxserve.session.input_buffer import InputBuffer, ms, samples_of
from voxserve.session.tasks import TaskOwner
from voxserve.session.turn import Turn
from voxserve.session.turn_detector import Pause, Resume, SpeechStart, SpeechStop, TurnDetector

log = logging.getLogger("voxserve.listener")

MIN_COMMIT_MS = 100  # shorter buffers are refused as empty, as the reference service does
# Partials start once this much has been said: on a buffer of mostly padding Moonshine invents
# words ("You", repeated; measured in docs/perf/asr-report.md)
FIRST_PARTIAL_MS = 500

Decode = Callable[[np.ndarray], Coroutine[Any, Any, Transcript | Exception]]  # never raises
AudioP = Callable[[np.ndarray], Awaitable[float | None]]  # P(turn complete), None if unknown


@dataclass(frozen=True)
class SpeechStarted:
    item_id: str
    onset: int  # session-clock sample where speech began
    audio_start: int  # onset less the prefix padding: the start of the item's audio
    td: TurnDetection


@dataclass(frozen=True)
class SpeechGrew:
    """Another `partial_interval_ms` of the speech under way: `audio` is all of it so far (for a
    partial transcript)."""
    item_id: str
    audio: np.ndarray


@dataclass(frozen=True)
class WordsComplete:
    """The decode at the first pause of `item_id` reads as a finished sentence: the turn will
    probably end at this pause (a speculative answer may start)."""
    item_id: str
    text: str


@dataclass(frozen=True)
class SpeechResumed:
    """The user spoke again after the first pause: whatever was started on it is stale."""


@dataclass(frozen=True)
class SpeechLasted:
    """The speech under way has lasted `interrupt_min_ms` (onset to its last voiced window)."""


@dataclass(frozen=True)
class TurnEnded:
    item_id: str
    audio: np.ndarray  # the turn's audio, prefix padding included (16 kHz)
    end_sample: int  # where the final silence began
    silence_ms: int  # the silence that ended it (fixed, or decided for this pause)
    turn: Turn
    decoded: asyncio.Task[Transcript | Exception] | None  # the early decode, when it covers it
    td: TurnDetection


@dataclass(frozen=True)
class IdleTimedOut:
    item_id: str
    audio: np.ndarray  # what is still held of the silence (the prefix-padding window)
    start_sample: int  # where the agent went quiet
    end_sample: int
    td: TurnDetection


Heard = (SpeechStarted | SpeechGrew | WordsComplete | SpeechResumed | SpeechLasted | TurnEnded
         | IdleTimedOut)


def threaded(model: EndOfTurnModel | None) -> AudioP | None:
    """An end-of-turn model run on a worker thread (it takes tens of ms); a failure is logged
    and reads as 'unknown', so the judgement falls back on the words and the timeout."""
    if model is None:
        return None

    async def audio_p(audio: np.ndarray) -> float | None:
        try:
            return await asyncio.to_thread(model.probability, audio)
        except Exception:
            log.warning("end-of-turn model failed", exc_info=True)
            return None
    return audio_p


class PauseScope:
    """One pause of one turn: its trace record, the early decode and the judgement. The decode is
    handed over when the turn ends here (it then covers the whole turn); anything else the scope
    started dies with it."""

    def __init__(self, turn: Turn, tasks: TaskOwner) -> None:
        self.turn = turn
        self._tasks = tasks
        self.decode: asyncio.Task[Transcript | Exception] | None = None
        self._watchers: list[asyncio.Task[None]] = []  # the judgement, the words' watch

    def start(self, decode: Coroutine[Any, Any, Transcript | Exception],
              judge: Callable[[PauseScope], Coroutine[Any, Any, None]] | None,
              watch: Callable[[PauseScope], Coroutine[Any, Any, None]]) -> None:
        self.decode = self._tasks.start(decode)
        self._watchers = [self._tasks.start(watch(self))]
        if judge is not None:
            self._watchers.append(self._tasks.start(judge(self)))

    def close(self) -> asyncio.Task[Transcript | Exception] | None:
        """The turn ended at this pause: the judgement is over, the decode goes to the caller."""
        decode, self.decode = self.decode, None
        self._stop_watchers()
        return decode

    def cancel(self) -> None:
        """Speech resumed (or the input was cleared): everything started at this pause is stale."""
        if self.decode is not None:
            self.decode.cancel()  # the pipeline cancels the Serve call behind it
            self.decode = None
        self._stop_watchers()

    def _stop_watchers(self) -> None:
        # The judgement itself may be what ends the turn; it must not cancel itself doing so.
        for task in self._watchers:
            if task is not asyncio.current_task():
                task.cancel()
        self._watchers = []


class Listener:
    def __init__(self, *, vad_factory: Callable[[], VadModel], vad: VadOptions,
                 max_buffer_seconds: float, decode: Decode, audio_p: AudioP | None,
                 tasks: TaskOwner, begin_turn: Callable[[float], Turn],
                 on_heard: Callable[[Heard], Awaitable[None]], session_id: str = "",
                 partial_interval_ms: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._session_id = session_id  # carried by its log lines
        self._partial_every = samples_of(partial_interval_ms)  # 0: no SpeechGrew reports
        self._partial_at = 0  # sample of the last SpeechGrew
        self.buffer = InputBuffer(max_buffer_seconds, clock=clock)
        # decode, resample, echo cancellation and noise suppression; the session replaces it
        # when its settings change
        self.front_end = FrontEnd()
        self._vad_factory = vad_factory
        self._vad = vad
        self._max_buffer_seconds = max_buffer_seconds
        self._decode = decode
        self._audio_p = audio_p
        self._tasks = tasks
        self._begin_turn = begin_turn
        self._on_heard = on_heard
        self._clock = clock
        self._detector: TurnDetector | None = None
        self._lock = asyncio.Lock()  # the detector is driven by audio and by the judgement
        self._client_turn: str | None = None  # Voice Live client-driven turn in progress
        self._speech_item: str | None = None
        self._speech_start = 0
        self._lasted = False  # SpeechLasted already reported for the speech under way
        self._scope: PauseScope | None = None
        self._idle_from: int | None = None  # sample where the agent went quiet

    # ---- configuration and state ----------------------------------------------------------

    def configure(self, td: TurnDetection | None) -> None:
        """Follow the session's turn detection (None: the client commits by hand)."""
        if td is None:
            self._detector = None
        elif self._detector is None:
            self._detector = TurnDetector(self._vad_factory(), td, self._vad.min_speech_ms,
                                          pause_ms=self._vad.pause_ms)
            self._detector.reset(self.buffer.total_samples)
        else:
            self._detector.options = td

    @property
    def speaking(self) -> bool:
        """The VAD hears a turn under way."""
        return self._detector is not None and self._detector.speaking

    @property
    def turn_detection(self) -> TurnDetection | None:
        return self._detector.options if self._detector is not None else None

    def paused_on(self, item_id: str) -> bool:
        """The user's speech `item_id` is in a pause: not resumed, not ended."""
        return self._scope is not None and self._speech_item == item_id

    def heard_until(self) -> float:
        """Monotonic arrival time of the latest audio."""
        return self.buffer.arrival_time(self.buffer.total_samples)

    def start_idle_clock(self) -> None:
        """The agent went quiet: GA `idle_timeout_ms` counts from here, on the audio clock."""
        self._idle_from = self.buffer.total_samples

    def stop_idle_clock(self) -> None:
        self._idle_from = None

    def cancel(self) -> None:
        """The session ends: drop the pause scope and everything it started."""
        self._drop_scope()
        self._tasks.cancel()

    # ---- audio in ---------------------------------------------------------------------------

    async def append(self, data: bytes, fmt: AudioFormat) -> None:
        """Wire audio in: decoded, resampled, buffered and (unless a client turn is open) fed to
        the VAD. Bad audio is a `ProtocolError` and changes nothing."""
        try:
            samples = self.front_end.process(data, fmt)
        except ValueError as exc:
            raise ProtocolError(ErrorCode.INVALID_VALUE, str(exc), "audio") from None
        self.buffer.append(samples)
        async with self._lock:
            await self._feed(samples)

    async def _feed(self, samples: np.ndarray) -> None:
        detector = None if self._client_turn is not None else self._detector
        if detector is None:  # the client decides where the turn ends; only memory is bounded
            if self.buffer.overflowing():
                self.buffer.drop_before(self.buffer.total_samples
                                        - samples_of(self._max_buffer_seconds * 1000))
                raise ProtocolError(ErrorCode.AUDIO_TOO_LARGE,
                                    f"input audio buffer is over {self._max_buffer_seconds:.0f}"
                                    " s; commit or clear it (oldest audio dropped)")
            return
        for event in detector.feed(samples):
            match event:
                case SpeechStart(sample=onset):
                    await self._speech_started(onset, detector.options)
                case Pause():
                    self._open_scope(event, detector)
                case Resume():
                    self._drop_scope()  # its turn record never ended, so it is never exported
                    await self._on_heard(SpeechResumed())
                case SpeechStop(sample=end, silence_ms=silence):
                    await self._end_turn(end, silence, detector.options)
        if (detector.speaking and not self._lasted
                and detector.voiced_samples >= samples_of(self._vad.interrupt_min_ms)):
            self._lasted = True
            await self._on_heard(SpeechLasted())
        if (self._partial_every and detector.speaking and not detector.paused
                and self._speech_item is not None
                and detector.voiced_samples >= samples_of(FIRST_PARTIAL_MS)
                and self.buffer.total_samples - self._partial_at >= self._partial_every):
            # while the user talks, not in a pause: the pause's own decode covers that
            self._partial_at = self.buffer.total_samples
            await self._on_heard(SpeechGrew(self._speech_item, self.buffer.audio(self._speech_start)))
        if not detector.speaking:
            await self._check_idle(detector.options)
            # between turns only the prefix-padding window (and a margin) is kept
            keep = samples_of(detector.options.prefix_padding_ms) + samples_of(100)
            self.buffer.drop_before(self.buffer.total_samples - keep)
        elif self.buffer.overflowing():  # an endless "turn" (e.g. constant noise): cut it here
            await self._end_turn(self.buffer.total_samples, 0, detector.options)
            detector.reset(self.buffer.total_samples)

    async def _speech_started(self, onset: int, td: TurnDetection) -> None:
        self._idle_from = None
        self._lasted = False
        start = max(self.buffer.start_sample, onset - samples_of(td.prefix_padding_ms))
        self._speech_item = new_id("item")
        self._speech_start = start
        self._partial_at = onset
        await self._on_heard(SpeechStarted(self._speech_item, onset, start, td))

    def _open_scope(self, pause: Pause, detector: TurnDetector) -> None:
        """The user stopped speaking, for now: the turn's trace starts at the end of speech, and
        the decode of what was said so far starts inside it."""
        self._drop_scope()
        turn = self._begin_turn(self.buffer.arrival_time(pause.speech_end))
        turn.asr_start = self._clock()
        audio = self.buffer.audio(self._speech_start, pause.sample)
        scope = PauseScope(turn, self._tasks)
        waits = detector.waits
        judge = None
        if waits is not None:
            def judge(s: PauseScope) -> Coroutine[Any, Any, None]:
                return self._judge(s, audio, waits)
        with turn.current():
            scope.start(self._decode(audio), judge, self._watch_words)
        self._scope = scope

    def _drop_scope(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None

    async def _watch_words(self, scope: PauseScope) -> None:
        """Report the pause's words when they read as a finished sentence (in every mode: a
        speculative answer can use the rest of a fixed silence wait too)."""
        decode, item_id = scope.decode, self._speech_item
        if decode is None or item_id is None:
            return
        await asyncio.wait({decode})  # not `await decode`: cancelling us must not cancel it
        result = None if decode.cancelled() else decode.result()
        if (isinstance(result, Transcript) and text_complete(result.text)
                and scope is self._scope):
            await self._on_heard(WordsComplete(item_id, result.text))

    async def _judge(self, scope: PauseScope, audio: np.ndarray, waits: Waits) -> None:
        """Semantic end of turn for one pause: the audio model first (tens of ms), then the words
        of the decode started at the same pause; each answer sets the silence that ends it."""
        t0 = self._clock()
        p = await self._audio_p(audio) if self._audio_p is not None else None
        await self._require_silence(scope, required_silence_ms(waits, p, None))
        decode = scope.decode
        if decode is None:
            return  # the turn already ended on the audio model's word
        await asyncio.wait({decode})  # not `await decode`: cancelling us must not cancel it
        result = None if decode.cancelled() else decode.result()
        text_ok = text_complete(result.text) if isinstance(result, Transcript) else None
        wait = required_silence_ms(waits, p, text_ok)
        log.info("end_of_turn.judged session=%s audio_p=%s text_complete=%s wait_ms=%d "
                 "judge_ms=%.0f", self._session_id, None if p is None else round(p, 3), text_ok, wait, (self._clock() - t0) * 1000)
        scope.turn.set_attributes({"voxserve.eot.audio_p": -1.0 if p is None else p,
                                   "voxserve.eot.text_complete": str(text_ok),
                                   "voxserve.eot.wait_ms": wait})
        await self._require_silence(scope, wait)

    async def _require_silence(self, scope: PauseScope, wait_ms: int) -> None:
        async with self._lock:
            detector = self._detector
            if scope is not self._scope or detector is None:
                return  # stale: speech resumed or the input was reset meanwhile
            detector.require_silence(wait_ms)
            if (stop := detector.end_if_due()) is not None:
                await self._end_turn(stop.sample, stop.silence_ms, detector.options)

    async def _end_turn(self, end: int, silence_ms: int, td: TurnDetection) -> None:
        scope, self._scope = self._scope, None
        # the early decode covers the whole turn when no speech came after it started (speech
        # that resumed would have dropped the scope)
        decoded = scope.close() if scope is not None else None
        turn = scope.turn if scope is not None else self._begin_turn(self.buffer.arrival_time(end))
        turn.decided = self._clock()
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        audio = self.buffer.audio(self._speech_start)
        self.buffer.clear()
        await self._on_heard(TurnEnded(item_id, audio, end, silence_ms or td.silence_duration_ms,
                                       turn, decoded, td))

    async def _check_idle(self, td: TurnDetection) -> None:
        """GA idle timeout: no speech for `idle_timeout_ms` after the agent went quiet (on the
        audio clock) ends a silent user turn."""
        if td.idle_timeout_ms is None or self._idle_from is None:
            return
        now = self.buffer.total_samples
        if now - self._idle_from < samples_of(td.idle_timeout_ms):
            return
        idle_from, self._idle_from = self._idle_from, None
        audio = self.buffer.audio(max(idle_from, self.buffer.start_sample), now)
        self.buffer.clear()
        await self._on_heard(IdleTimedOut(new_id("item"), audio, idle_from, now, td))

    # ---- the client commits -----------------------------------------------------------------

    def take_buffer(self) -> tuple[str, np.ndarray]:
        """Manual commit: the held audio (from the speech start if the VAD heard one) and its
        item id; the VAD starts afresh."""
        held = ms(self.buffer.held_samples)
        if held < MIN_COMMIT_MS:
            raise ProtocolError(ErrorCode.COMMIT_EMPTY,
                                f"buffer too small: {held} ms of audio, at least "
                                f"{MIN_COMMIT_MS} ms needed")
        start = self._speech_start if self._speech_item else self.buffer.start_sample
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        self._drop_scope()
        audio = self.buffer.audio(start)
        self.buffer.clear()
        if self._detector is not None:
            self._detector.reset(self.buffer.total_samples)
        return item_id, audio

    def clear(self) -> None:
        """Forget the input audio and any turn being formed from it."""
        self.buffer.clear()
        self._speech_item = None
        self._drop_scope()
        if self._detector is not None:
            self._detector.reset(self.buffer.total_samples)

    # Voice Live client-driven turns: the VAD stays out of them; the client says where they end.

    def open_client_turn(self, turn_id: str) -> None:
        if self._client_turn is not None:
            raise ProtocolError(ErrorCode.INVALID_VALUE, f"turn {self._client_turn!r} is still "
                                "open; end or cancel it first", "turn_id")
        self._client_turn = turn_id
        self.clear()

    def check_client_turn(self, turn_id: str) -> None:
        if self._client_turn is None:
            raise ProtocolError(ErrorCode.INVALID_VALUE, "no input audio turn is open; send "
                                "input_audio.turn.start first", "turn_id")
        if turn_id != self._client_turn:
            raise ProtocolError(ErrorCode.INVALID_VALUE,
                                f"turn {turn_id!r} is not the open turn {self._client_turn!r}",
                                "turn_id")

    def end_client_turn(self, turn_id: str) -> tuple[str, np.ndarray]:
        self.check_client_turn(turn_id)
        self._client_turn = None
        try:
            return self.take_buffer()
        except ProtocolError:
            self.buffer.clear()  # the turn is over either way
            raise

    def cancel_client_turn(self, turn_id: str) -> None:
        self.check_client_turn(turn_id)
        self._client_turn = None
        self.clear()
