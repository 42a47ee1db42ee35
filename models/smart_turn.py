"""Smart Turn v3.2: an audio end-of-turn classifier (BSD-2), run on plain onnxruntime.

The ONNX file ships inside the `pipecat-ai` wheel, installed with `--no-deps` (the framework's
own dependencies are not needed, and its package is never imported: the file is found with
`importlib.util.find_spec`). The model takes the last 8 s of 16 kHz audio, left-padded with zeros,
normalised to zero mean and unit variance, as an 80x800 Whisper log-mel; it returns a sigmoid
probability that the turn is complete. faster-whisper's feature extractor computes the same
log-mel (checked against the reference to 5e-6), so no extra DSP code lives here. One call
costs 40-90 ms on one core, so the session runs it in a worker thread, once per pause.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from .weights import WeightsError, package_file

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 8
SMART_TURN_ONNX = "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
SMART_TURN_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def smart_turn_path() -> Path:
    path = package_file("pipecat", SMART_TURN_ONNX)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()  # 8.7 MB: hashing costs ~20 ms
    if digest != SMART_TURN_SHA256:
        raise WeightsError(f"{path} has sha256 {digest}, expected {SMART_TURN_SHA256} "
                           "(install pipecat-ai==1.14.0 --no-deps)")
    return path


class SmartTurn:
    """`EndOfTurnModel` on Smart Turn v3.2. Thread-safe: onnxruntime's `run` may be called from
    several threads, and the feature extractor holds only read-only tables."""

    def __init__(self, model_path: str | Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session: Any = ort.InferenceSession(str(model_path or smart_turn_path()), opts,
                                                  providers=["CPUExecutionProvider"])
        self._features = FeatureExtractor(chunk_length=WINDOW_SECONDS)
        self._n = WINDOW_SECONDS * SAMPLE_RATE

    def probability(self, audio_16k: np.ndarray) -> float:
        audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)[-self._n:]
        if audio.size < self._n:
            audio = np.pad(audio, (self._n - audio.size, 0))
        audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
        mel = self._features(audio, padding=0)[:, : self._n // 160]
        out = self._session.run(None, {"input_features": mel[None].astype(np.float32)})
        return float(np.asarray(out[0]).reshape(-1)[0])
