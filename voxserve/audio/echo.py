"""The far end of echo cancellation: what the client's loudspeaker plays, at 16 kHz, on the
server's clock.

The server sends an answer faster than real time, so what it sent is not what is playing. The
session's playback model (voxserve/session/playback.py) says when each piece of output starts
playing (on arrival when nothing plays, else right after what is queued) and when the client
stops (a barge-in, `output_audio_buffer.clear`, a truncate); it hands each piece here, and the
front end reads back the stretch that was playing while each microphone chunk was captured.
What is left between that model and the room (network, the client's playout buffer, the
loudspeaker-to-microphone path) is a delay of some 50-400 ms, which AEC3's delay estimator finds
by itself (measured: 36-65 dB of echo reduction at 50-400 ms, none at 800 ms).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import numpy as np

from voxserve.audio.resample import StreamResampler

RATE = 16000
# Pieces closer than this to the end of the previous one continue it (one resampler stream).
_CONTIGUOUS_SAMPLES = RATE // 1000


class EchoReference:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._epoch = clock()
        self._clock = clock
        self._pieces: deque[tuple[int, np.ndarray]] = deque()  # (start sample, 16 kHz samples)
        self._end = 0  # sample where the last piece written ends
        self._run_next = 0.0  # sample where a piece continuing the current run starts
        self._resampler: StreamResampler | None = None

    def _index(self, t: float) -> int:
        return round((t - self._epoch) * RATE)

    def play(self, start: float, samples: np.ndarray, rate: int) -> None:
        """`samples` at `rate` start playing at monotonic time `start`."""
        at = self._index(start)
        if self._resampler is None or self._resampler.src_rate != rate \
                or abs(at - self._run_next) > _CONTIGUOUS_SAMPLES:
            # a new run: a fresh resampler, whose first output sample is this piece's first
            self._resampler = StreamResampler(rate, RATE)
            self._end = at
            self._run_next = float(at)
        # the run goes on where its input says (the resampler holds a few samples back)
        self._run_next += samples.size * RATE / rate
        out = self._resampler.process(samples)
        if out.size:
            self._pieces.append((self._end, out))
            self._end += out.size

    def stop(self, at: float | None = None) -> None:
        """The client stopped playing at `at` (now): nothing after it will sound."""
        cut = self._index(self._clock() if at is None else at)
        while self._pieces and self._pieces[-1][0] >= cut:
            self._pieces.pop()
        if self._pieces:
            start, samples = self._pieces[-1]
            if start + samples.size > cut:
                self._pieces[-1] = (start, samples[:cut - start])
        self._end = min(self._end, cut)
        self._resampler = None

    def read(self, start: float, n: int) -> np.ndarray:
        """The `n` samples playing from monotonic time `start` (silence where nothing was).
        Reads move forward: what ends before `start` is forgotten."""
        lo = self._index(start)
        while self._pieces and self._pieces[0][0] + self._pieces[0][1].size <= lo:
            self._pieces.popleft()
        out = np.zeros(n, np.float32)
        for at, samples in self._pieces:
            if at >= lo + n:
                break
            a, b = max(at, lo), min(at + samples.size, lo + n)
            out[a - lo:b - lo] = samples[a - at:b - at]
        return out

    @property
    def held_samples(self) -> int:
        return sum(samples.size for _, samples in self._pieces)
