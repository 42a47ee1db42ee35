"""The input audio buffer: client audio at 16 kHz (after the front end), kept until committed.

All times are milliseconds since the first audio appended in the session, which is what
`audio_start_ms` / `audio_end_ms` on the wire count from. Memory is bounded: while no speech is
in progress only the prefix-padding window is kept, and a manual-commit buffer is capped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import numpy as np

from voxserve.audio.formats import AudioFormat
from voxserve.audio.resample import resample

RATE = 16000


class InputBuffer:
    def __init__(self, max_seconds: float = 120.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._chunks: list[np.ndarray] = []
        self._start = 0  # sample index (session clock) of the first sample held
        self._total = 0  # samples appended in the session
        self._max = int(max_seconds * RATE)
        # (session-clock sample after an append, monotonic arrival time): when audio got here,
        # to time the end of the user's speech as the client produced it
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=512)

    @property
    def total_samples(self) -> int:
        return self._total

    @property
    def start_sample(self) -> int:
        return self._start

    @property
    def held_samples(self) -> int:
        return self._total - self._start

    def append(self, samples: np.ndarray) -> None:
        """16 kHz samples from the front end (voxserve/audio/front_end.py)."""
        if samples.size:
            self._chunks.append(samples)
            self._total += samples.size
            self._arrivals.append((self._total, self._clock()))

    def arrival_time(self, sample: int) -> float:
        """Monotonic time at which session-clock `sample` arrived (to one append's precision)."""
        for end, when in self._arrivals:
            if end >= sample:
                return when
        return self._arrivals[-1][1] if self._arrivals else self._clock()

    def overflowing(self) -> bool:
        return self.held_samples > self._max

    def audio(self, start: int | None = None, end: int | None = None) -> np.ndarray:
        """Samples between two session-clock sample indices (default: everything held)."""
        if not self._chunks:
            return np.zeros(0, np.float32)
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        data = self._chunks[0]
        lo = max(0, (start if start is not None else self._start) - self._start)
        hi = (end if end is not None else self._total) - self._start
        return data[lo:max(lo, hi)]

    def drop_before(self, sample: int) -> None:
        """Forget audio before `sample` (the VAD keeps only the prefix-padding window)."""
        sample = min(max(sample, self._start), self._total)
        if sample == self._start:
            return
        data = self.audio()
        self._chunks = [data[sample - self._start:]] if sample < self._total else []
        self._start = sample

    def clear(self) -> None:
        self._chunks = []
        self._start = self._total


def to_session_rate(data: bytes, fmt: AudioFormat) -> np.ndarray:
    """Wire bytes of one whole clip (not a stream: no resampler state) at the session's 16 kHz."""
    return resample(fmt.decode(data), fmt.rate, RATE)


def ms(samples: int) -> int:
    return int(samples * 1000 // RATE)


def samples_of(ms_: float) -> int:
    return int(ms_ * RATE // 1000)
