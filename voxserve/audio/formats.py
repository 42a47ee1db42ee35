"""Wire audio formats: what the client sends and expects, and the conversion to float samples.

Every dialect names formats differently (GA `{"type": "audio/pcm", "rate": 24000}`, beta and Voice
Live `"pcm16"`, `"g711_ulaw"`, `"pcm16_16000hz"` ...); they all reduce to an encoding and a rate.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Literal

import numpy as np

from voxserve.audio import g711

Encoding = Literal["pcm16", "g711_ulaw", "g711_alaw"]


@dataclass(frozen=True)
class AudioFormat:
    encoding: Encoding = "pcm16"
    rate: int = 24000

    def decode(self, data: bytes) -> np.ndarray:
        """Wire bytes -> float32 mono samples in [-1, 1] at `self.rate`."""
        if self.encoding == "pcm16":
            if len(data) % 2:
                raise ValueError("pcm16 audio must have an even number of bytes")
            pcm = np.frombuffer(data, dtype="<i2")
        elif self.encoding == "g711_ulaw":
            pcm = g711.ulaw_decode(data)
        else:
            pcm = g711.alaw_decode(data)
        return pcm.astype(np.float32) / 32768.0

    def seconds(self, nbytes: int) -> float:
        """How much audio `nbytes` of this format hold."""
        return nbytes / ((2 if self.encoding == "pcm16" else 1) * self.rate)

    def encode(self, samples: np.ndarray) -> bytes:
        """float32 samples at `self.rate` -> wire bytes."""
        pcm = to_pcm16(samples)
        if self.encoding == "pcm16":
            return pcm.astype("<i2").tobytes()
        if self.encoding == "g711_ulaw":
            return g711.ulaw_encode(pcm)
        return g711.alaw_encode(pcm)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def b64decode_strict(text: str) -> bytes:
    """Base64 -> bytes, refusing anything that is not base64 (a silent partial decode would
    turn a client bug into noise in the ASR)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"audio is not valid base64: {exc}") from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
