"""A speakerphone, simulated: the agent's audio played as a client plays it and picked up again by
the microphone, for the echo benchmark (bench/echo.py) and the tests.

Time is the microphone's: each `mic(n)` call advances the room by `n` samples (the caller sends
them at real time). Received audio joins a playout queue and plays from the moment it arrives (or
after what is queued), like a browser's audio worklet; `stop()` drops the queue, as a client
does on `speech_started`. The microphone hears what played `delay_ms` ago, scaled by `gain`,
through a small room (a direct path and an exponentially decaying reverberant tail), plus a
user's recording when one is `say()`-ing, plus a faint noise floor.
"""

from __future__ import annotations

import numpy as np

from voxserve.client import RATE


class EchoRoom:
    def __init__(self, delay_ms: float = 200.0, gain: float = 0.5, reverb_ms: float = 120.0,
                 seed: int = 0, rate: int = RATE, noise_floor: float = 3e-4) -> None:
        self.rate = rate
        self._delay = int(rate * delay_ms / 1000)
        self._gain = gain
        rng = np.random.default_rng(seed)
        taps = max(1, int(rate * reverb_ms / 1000))
        tail = rng.normal(0.0, 1.0, taps) * np.exp(-np.arange(taps) / (taps / 5.0))
        ir = 0.25 * tail / np.sqrt(np.sum(tail ** 2))  # the tail 12 dB under the direct path
        ir[0] = 1.0
        self._ir = ir.astype(np.float32)
        self._noise = rng
        self._noise_floor = noise_floor
        self._queue: list[np.ndarray] = []  # received, not yet played
        # what the loudspeaker played, newest last: enough for the delay and the room's tail
        self._history = np.zeros(self._delay + taps + rate, np.float32)
        self._user = np.zeros(0, np.float32)
        self.played_s = 0.0  # agent audio that reached the loudspeaker
        self.last: tuple[np.ndarray, np.ndarray] | None = None  # (mic, played) of the last chunk

    @property
    def playing(self) -> bool:
        return any(q.size for q in self._queue)

    @property
    def user_speaking(self) -> bool:
        return self._user.size > 0

    def received(self, samples: np.ndarray) -> None:
        """An audio delta arrived (float32 at `rate`)."""
        if samples.size:
            self._queue.append(samples.astype(np.float32, copy=False))

    def stop(self) -> None:
        """The client stopped playback (barge-in): what is queued never plays."""
        self._queue.clear()

    def say(self, samples: np.ndarray, gain: float = 1.0) -> None:
        """A user's recording starts now, over whatever plays."""
        self._user = (samples * gain).astype(np.float32)

    def mic(self, n: int) -> np.ndarray:
        """The next `n` microphone samples."""
        played = self._play(n)
        self._history = np.concatenate([self._history[n:], played])
        # the echo of this chunk: the history `delay` back, through the room
        window = self._history[-(n + self._delay + self._ir.size - 1):self._history.size
                               - self._delay]
        echo = _convolve_valid(window, self._ir) * self._gain
        user, self._user = self._user[:n], self._user[n:]
        out = echo + self._noise.normal(0.0, self._noise_floor, n).astype(np.float32)
        out[:user.size] += user
        self.last = (out, played)
        return out.astype(np.float32)

    def _play(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        filled = 0
        while filled < n and self._queue:
            head = self._queue[0]
            take = min(n - filled, head.size)
            out[filled:filled + take] = head[:take]
            filled += take
            if take == head.size:
                self._queue.pop(0)
            else:
                self._queue[0] = head[take:]
        self.played_s += filled / self.rate
        return out


def _convolve_valid(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """np.convolve(x, h, 'valid') through the FFT (a 120 ms room is 2880 taps at 24 kHz)."""
    size = 1 << int(np.ceil(np.log2(x.size + h.size - 1)))
    full = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)
    return full[h.size - 1:x.size].astype(np.float32)
