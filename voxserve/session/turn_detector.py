"""Server VAD turn detection: speech start and end from a streaming voice-activity model.

Hysteresis as in Silero's own iterator: speech starts at `threshold` and only counts as silence
below `threshold - 0.15`, so a voice hovering near the threshold does not flap. A start needs
`min_speech_ms` of speech so a click or a cough onset does not open a turn; an end needs
`silence_duration_ms` of silence. In the semantic modes the silence needed is decided per pause by
the listener's pause judgement (`require_silence`, from `end_of_turn`); until it is, the mode's longest wait applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxserve.models.base import VadModel
from voxserve.protocol.session_config import TurnDetection
from voxserve.session.end_of_turn import Waits, waits_for

_NEG_MARGIN = 0.15


@dataclass(frozen=True)
class SpeechStart:
    sample: int  # session-clock sample where speech began (before prefix padding)


@dataclass(frozen=True)
class SpeechStop:
    sample: int  # session-clock sample where the final silence began
    silence_ms: int = 0  # the silence that ended the turn (fixed, or decided for this pause)


@dataclass(frozen=True)
class Pause:
    """Silence reached the pause mark mid-turn (the turn may still go on)."""

    speech_end: int  # session-clock sample where the silence began
    sample: int  # session-clock sample where the pause mark was reached


@dataclass(frozen=True)
class Resume:
    """Speech came back after a `Pause`, so whatever was started at the pause is stale."""


TurnEvent = SpeechStart | SpeechStop | Pause | Resume


class TurnDetector:
    def __init__(self, vad: VadModel, options: TurnDetection, min_speech_ms: int = 100,
                 pause_ms: int | None = None) -> None:
        self._vad = vad
        self._window = vad.window_samples
        self._pending = np.zeros(0, np.float32)
        self._clock = 0  # session-clock sample of the start of `_pending`
        self._speaking = False
        self._speech_run = 0
        self._speech_run_start = 0
        self._silence_run = 0
        self._silence_start = 0
        self._default_min_speech = min_speech_ms
        self._pause = None if pause_ms is None else int(pause_ms * 16)
        self._paused = False
        self._required: int | None = None  # silence needed for this pause, set by the session
        self._turn_start = 0
        self._last_voice = 0
        self.options = options

    @property
    def options(self) -> TurnDetection:
        return self._options

    @options.setter
    def options(self, td: TurnDetection) -> None:
        self._options = td
        self._waits = waits_for(td)
        # Voice Live speech_duration_ms: the speech needed before a turn starts
        self._min_speech = int((td.speech_duration_ms or self._default_min_speech) * 16)

    @property
    def semantic(self) -> bool:
        return self._waits is not None

    @property
    def waits(self) -> Waits | None:
        return self._waits

    @property
    def voiced_samples(self) -> int:
        """Onset to the last voiced window of the current turn (0 when not speaking): how long
        a burst of speech has lasted, trailing silence excluded."""
        return self._last_voice - self._turn_start if self._speaking else 0

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def paused(self) -> bool:
        """Speaking, but silent for the first-pause time: the turn may be ending."""
        return self._speaking and self._paused

    def require_silence(self, ms: int) -> None:
        """The silence that ends the current pause (semantic end of turn). Applies until speech
        resumes; if that much silence has already passed, the next window ends the turn."""
        if self._speaking and self._paused:
            self._required = int(ms * 16)

    def end_if_due(self) -> SpeechStop | None:
        """End the turn now if the silence already heard meets a just-lowered requirement
        (rather than on the next audio window)."""
        if not (self._speaking and self._paused and self._silence_run >= self._silence_needed()):
            return None
        return self._stop()

    def _stop(self) -> SpeechStop:
        """The turn ends here: back to waiting for speech."""
        stop = SpeechStop(self._silence_start, self._silence_needed() // 16)
        self._speaking = False
        self._paused = False
        self._required = None
        self._speech_run = self._silence_run = 0
        return stop

    def _silence_needed(self) -> int:
        if self._required is not None:
            return self._required
        if self._waits is not None:
            return self._waits.max * 16
        return self.options.silence_duration_ms * 16

    def reset(self, clock: int) -> None:
        self._vad.reset()
        self._pending = np.zeros(0, np.float32)
        self._clock = clock
        self._speaking = False
        self._paused = False
        self._required = None
        self._speech_run = self._silence_run = 0

    def feed(self, samples: np.ndarray) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        self._pending = np.concatenate([self._pending, samples]) if self._pending.size else samples
        w = self._window
        offset = 0
        threshold = self.options.threshold
        while self._pending.size - offset >= w:
            start = self._clock + offset
            p = self._vad.probability(self._pending[offset:offset + w])
            offset += w
            if not self._speaking:
                if p >= threshold:
                    if self._speech_run == 0:
                        self._speech_run_start = start
                    self._speech_run += w
                    if self._speech_run >= self._min_speech:
                        self._speaking = True
                        self._silence_run = 0
                        self._turn_start = self._speech_run_start
                        self._last_voice = start + w
                        events.append(SpeechStart(self._speech_run_start))
                elif p < threshold - _NEG_MARGIN:
                    self._speech_run = 0
            else:
                if p < threshold - _NEG_MARGIN:
                    if self._silence_run == 0:
                        self._silence_start = start
                    self._silence_run += w
                    if self._silence_run >= self._silence_needed():
                        events.append(self._stop())
                    elif (self._pause is not None and not self._paused
                          and self._silence_run >= self._pause):
                        self._paused = True
                        events.append(Pause(self._silence_start, start + w))
                elif p >= threshold:
                    self._silence_run = 0
                    self._last_voice = start + w
                    if self._paused:
                        self._paused = False
                        self._required = None
                        events.append(Resume())
        self._pending = self._pending[offset:]
        self._clock += offset
        return events
