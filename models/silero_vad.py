"""Streaming voice-activity probability with Silero VAD v6 on plain onnxruntime.

The `silero_vad` package imports torch at import time, so only its ONNX file is used: located with
`importlib.util.find_spec` (which does not execute the package) and run with onnxruntime and numpy.
The model is stateful: each 512-sample window (32 ms at 16 kHz) is fed together with the last 64
samples of the previous window (its "context") and the recurrent state (2, 1, 128) from the
previous call. One intra-op thread, sequential execution: a call costs well under 100 µs, so more
threads only add synchronisation overhead beside the other engines.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000
WINDOW = 512
CONTEXT = 64


def silero_onnx_path() -> Path:
    """Path of silero_vad/data/silero_vad.onnx, found without importing the package (it pulls torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the silero-vad package is not installed (pip install --no-deps silero-vad==6.2.3)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"silero-vad is installed but {path} is missing")
    return path


def _load(model_path: str | Path | None = None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(model_path or silero_onnx_path()), opts,
                                providers=["CPUExecutionProvider"])


class SileroVad:
    """`VadModel`: call `probability` once per 512-sample window of 16 kHz audio, in order."""

    window_samples = WINDOW

    def __init__(self, model_path: str | Path | None = None, *, session: Any = None) -> None:
        self._session = session if session is not None else _load(model_path)
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self._input = np.zeros((1, CONTEXT + WINDOW), dtype=np.float32)  # reused buffer: context + window
        self.reset()

    @classmethod
    def shared(cls, model_path: str | Path | None = None) -> Callable[[], SileroVad]:
        """A factory of per-stream detectors sharing one loaded model: each WebSocket session
        needs its own recurrent state, not its own copy of the network (onnxruntime's `run` is
        safe to call from several streams)."""
        session = _load(model_path)
        return lambda: cls(session=session)

    def reset(self) -> None:
        """Forget the stream: zero the recurrent state and the carried context (new utterance/session)."""
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._input[:] = 0.0

    def probability(self, window_16k: np.ndarray) -> float:
        window = np.asarray(window_16k, dtype=np.float32).reshape(-1)
        if window.shape[0] != WINDOW:
            raise ValueError(f"Silero VAD takes {WINDOW}-sample windows at 16 kHz, got {window.shape[0]}")
        buf = self._input
        buf[0, :CONTEXT] = buf[0, -CONTEXT:]  # last 64 samples of the previous window
        buf[0, CONTEXT:] = window
        out, self._state = self._session.run(None, {"input": buf, "state": self._state, "sr": self._sr})
        return float(out[0, 0])
