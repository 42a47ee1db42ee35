"""G.711 mu-law and A-law codecs in numpy.

The stdlib `audioop` module is gone in Python 3.13, so the codecs are written out here; both are
table-free bit manipulations of the ITU-T G.711 definitions, vectorised over whole chunks.
"""

from __future__ import annotations

import numpy as np

_BIAS = 0x84


def ulaw_encode(pcm: np.ndarray) -> bytes:
    # Works on 14-bit magnitudes like the reference coder, so the segment boundaries match
    # other implementations bit for bit.
    x = pcm.astype(np.int32) >> 2
    sign = np.where(x < 0, 0x80, 0).astype(np.int32)
    mag = np.minimum(np.abs(x), 8159) + 33
    raw_exponent = np.floor(np.log2(mag)).astype(np.int32) - 5
    exponent = np.clip(raw_exponent, 0, 7)
    # Past the last segment the code saturates at its largest value.
    mantissa = np.where(raw_exponent > 7, 0x0F, (mag >> (exponent + 1)) & 0x0F)
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -mag, mag).astype(np.int16)


def alaw_encode(pcm: np.ndarray) -> bytes:
    x = pcm.astype(np.int32) >> 3  # A-law works on 13-bit magnitudes
    sign = np.where(x >= 0, 0x80, 0).astype(np.int32)
    mag = np.minimum(np.where(x < 0, -x - 1, x), 0x0FFF)
    exponent = np.where(mag < 32, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 4)
    exponent = np.clip(exponent, 0, 7)
    mantissa = np.where(exponent == 0, mag >> 1, mag >> exponent) & 0x0F
    return (((sign | (exponent << 4) | mantissa) ^ 0x55) & 0xFF).astype(np.uint8).tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    a = np.frombuffer(data, dtype=np.uint8).astype(np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    mag = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(sign != 0, mag, -mag).astype(np.int16)
