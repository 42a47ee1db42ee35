"""One session's microphone path: wire bytes -> 16 kHz samples for VAD, Smart Turn and ASR.

Decode, split a two-channel input (microphone, client echo reference), resample to 16 kHz,
then, when the session asked for them, echo cancellation (WebRTC AEC3) and noise suppression
(voxserve/audio/denoise.py). A session that asked for neither pays only the decode and the
resample. The stages keep their state between chunks and work on whole 10 ms frames, so chunk
sizes do not matter; the delay is at most one frame.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from voxserve.audio.denoise import Denoiser
from voxserve.audio.echo import RATE, EchoReference
from voxserve.audio.formats import AudioFormat
from voxserve.audio.resample import StreamResampler

# Microphone audio arrives at the pace it is captured, give or take network jitter. The anchor
# that maps microphone samples to the clock moves later only when every chunk of the last
# LATE_WINDOW_S came REANCHOR_S later than the count says (a pause in the stream), and earlier as
# soon as one comes EARLY_S sooner.
REANCHOR_S = 0.25
LATE_WINDOW_S = 1.0
EARLY_S = 0.02
FRAME_S = 0.01  # the engines' frame: costs are reported per 10 ms of audio
FRAME = int(RATE * FRAME_S)
REPORT_FRAMES = 100  # costs go to `on_cost` once a second of audio


class EchoCanceller(Protocol):
    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray: ...


def aec3() -> EchoCanceller:
    from pywebrtc_audio import EchoCanceller as WebRtcEchoCanceller
    return WebRtcEchoCanceller(sample_rate=RATE)


class FrontEnd:
    def __init__(self, *, echo: EchoCanceller | None = None,
                 reference: EchoReference | None = None, client_reference: bool = False,
                 denoiser: Denoiser | None = None, chain: str = "",
                 on_cost: Callable[[str, float, int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`echo` with `reference` (the server's own output) or with `client_reference` (the
        second channel of the input); `denoiser` after it."""
        if echo is not None and (reference is None) == (not client_reference):
            raise ValueError("echo cancellation needs exactly one reference: the server's "
                             "output or the client's second channel")
        self._echo = echo
        self._reference = reference
        self.channels = 2 if client_reference else 1
        self.denoiser = denoiser  # may be set after construction (the session does)
        self.chain = chain  # what it runs, for the cost metric ("aec+far_field")
        self._on_cost = on_cost
        self._clock = clock
        self._fmt: AudioFormat | None = None
        self._near: StreamResampler | None = None
        self._far: StreamResampler | None = None
        self._captured_until: float | None = None  # where the next chunk starts, on the clock
        self._lateness: deque[tuple[float, float]] = deque()  # (arrival, how late), recent
        # the part of a 10 ms frame not yet processed (at most one frame of delay)
        self._near_rest = np.zeros(0, np.float32)
        self._far_rest = np.zeros(0, np.float32)
        self.cost_s = 0.0  # seconds spent in echo cancellation and noise suppression
        self.frames = 0  # 10 ms frames processed by them
        self._unreported = (0.0, 0)

    @property
    def processing(self) -> bool:
        return self._echo is not None or self.denoiser is not None

    def seconds(self, nbytes: int, fmt: AudioFormat) -> float:
        """How much audio `nbytes` of input hold (a two-channel input holds half)."""
        return fmt.seconds(nbytes) / self.channels

    def process(self, data: bytes, fmt: AudioFormat) -> np.ndarray:
        """Wire bytes -> 16 kHz samples; ValueError on audio that cannot be decoded."""
        decoded = fmt.decode(data)
        if self._fmt != fmt:
            self._fmt = fmt
            self._near = StreamResampler(fmt.rate, RATE)
            self._far = StreamResampler(fmt.rate, RATE)
        assert self._near is not None and self._far is not None
        if self.channels == 2:
            if decoded.size % 2:
                raise ValueError("two-channel audio must hold whole frames (microphone, "
                                 "reference)")
            frames = decoded.reshape(-1, 2)
            near = self._near.process(frames[:, 0])
            far: np.ndarray | None = self._far.process(frames[:, 1])
        else:
            near, far = self._near.process(decoded), None
        if not self.processing or near.size == 0:
            return near
        started = time.perf_counter()
        if self._echo is not None:
            if far is None:
                far = self._server_reference(near.size)
            near, far = self._whole_frames(near, far)
            if near.size:
                near = self._echo.process(near, far)
        if self.denoiser is not None and near.size:
            near = self.denoiser.process(near)
        self._count(time.perf_counter() - started, round(near.size / (RATE * FRAME_S)))
        return near

    def _count(self, seconds: float, frames: int) -> None:
        self.cost_s += seconds
        self.frames += frames
        pending = (self._unreported[0] + seconds, self._unreported[1] + frames)
        if self._on_cost is not None and pending[1] >= REPORT_FRAMES:
            self._on_cost(self.chain, *pending)
            pending = (0.0, 0)
        self._unreported = pending

    def _whole_frames(self, near: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whole 10 ms frames of both, the rest kept for the next chunk: AEC3 fed a partial
        frame distorts it (measured: a 376-sample chunking cut the level by 2.7 dB and turned
        Whisper's "ill-disposed" into "old supposed")."""
        near = np.concatenate([self._near_rest, near])
        far = np.concatenate([self._far_rest, far])
        whole = near.size - near.size % FRAME
        self._near_rest, self._far_rest = near[whole:], far[whole:]
        return near[:whole], far[:whole]

    def _server_reference(self, n: int) -> np.ndarray:
        """What played while these `n` samples were captured, counted in microphone samples
        from an anchor on the clock. Arrival times only move the anchor: earlier at once when a
        chunk comes sooner than the count says (the anchor was set by a late chunk), later only
        when every chunk for a while came that much later (the client paused its stream), never
        for one late chunk (network jitter: a 100 ms jitter re-anchored per chunk cost AEC3 all
        of its echo reduction, measured)."""
        assert self._reference is not None
        now = self._clock()
        if self._captured_until is None:
            self._captured_until = now - n / RATE
        lateness = now - (self._captured_until + n / RATE)
        self._lateness.append((now, lateness))
        while self._lateness and self._lateness[0][0] < now - LATE_WINDOW_S:
            self._lateness.popleft()
        if lateness < -EARLY_S:
            self._captured_until += lateness
        elif (now - self._lateness[0][0] >= 0.8 * LATE_WINDOW_S
              and (least := min(late for _, late in self._lateness)) > REANCHOR_S):
            self._captured_until += least
            self._lateness.clear()
        start = self._captured_until
        self._captured_until = start + n / RATE
        return self._reference.read(start, n)
