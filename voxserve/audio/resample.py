"""Sample-rate conversion with soxr, one-shot and streaming.

Streaming matters on the input path: audio arrives in arbitrary small pieces and a per-piece
one-shot resample would click at every boundary; `soxr.ResampleStream` keeps the filter state.
"""

from __future__ import annotations

import numpy as np
import soxr


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    if src_rate == dst_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples.astype(np.float32, copy=False), src_rate, dst_rate, quality="HQ")


class StreamResampler:
    """Resamples a stream chunk by chunk with continuous filter state."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._stream = (
            None if src_rate == dst_rate
            else soxr.ResampleStream(src_rate, dst_rate, 1, dtype="float32", quality="HQ")
        )

    def process(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples.astype(np.float32, copy=False)
        return self._stream.resample_chunk(samples.astype(np.float32, copy=False), last=last)
