"""Server VAD turn detection: speech start and end from a streaming voice-activity model.

Hysteresis as in Silero's own iterator: speech starts at `threshold` and only counts as silence
below `threshold - 0.15`, so a voice hovering near the threshold does not flap. A start needs
`min_speech_ms` of speech so a click or a cough onset does not open a turn; an end needs
`silence_duration_ms` of silence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxserve.models.base import VadModel
from voxserve.protocol.session_config import TurnDetection

_NEG_MARGIN = 0.15

# GA semantic_vad eagerness mapped onto silence waits until a semantic end-of-turn model is in
# place: "high" ends turns soonest, "low" lets the user pause longest.
EAGERNESS_SILENCE_MS = {"high": 350, "medium": 700, "auto": 700, "low": 1200}


@dataclass(frozen=True)
class SpeechStart:
    sample: int  # session-clock sample where speech began (before prefix padding)


@dataclass(frozen=True)
class SpeechStop:
    sample: int  # session-clock sample where the final silence began


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
        self.options = options
        self._window = vad.window_samples
        self._pending = np.zeros(0, np.float32)
        self._clock = 0  # session-clock sample of the start of `_pending`
        self._speaking = False
        self._speech_run = 0
        self._speech_run_start = 0
        self._silence_run = 0
        self._silence_start = 0
        self._min_speech = int(min_speech_ms * 16)
        self._pause = None if pause_ms is None else int(pause_ms * 16)
        self._paused = False

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def silence_samples(self) -> int:
        """Silence heard since speech was last active (0 while the user is talking)."""
        return self._silence_run if self._speaking else 0

    def _silence_needed(self) -> int:
        opt = self.options
        if opt.type == "semantic_vad":
            return EAGERNESS_SILENCE_MS[opt.eagerness or "auto"] * 16
        return opt.silence_duration_ms * 16

    def reset(self, clock: int) -> None:
        self._vad.reset()
        self._pending = np.zeros(0, np.float32)
        self._clock = clock
        self._speaking = False
        self._paused = False
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
                        events.append(SpeechStart(self._speech_run_start))
                elif p < threshold - _NEG_MARGIN:
                    self._speech_run = 0
            else:
                if p < threshold - _NEG_MARGIN:
                    if self._silence_run == 0:
                        self._silence_start = start
                    self._silence_run += w
                    if self._silence_run >= self._silence_needed():
                        self._speaking = False
                        self._speech_run = 0
                        self._paused = False
                        events.append(SpeechStop(self._silence_start))
                        self._silence_run = 0
                    elif (self._pause is not None and not self._paused
                          and self._silence_run >= self._pause):
                        self._paused = True
                        events.append(Pause(self._silence_start, start + w))
                elif p >= threshold:
                    self._silence_run = 0
                    if self._paused:
                        self._paused = False
                        events.append(Resume())
        self._pending = self._pending[offset:]
        self._clock += offset
        return events
