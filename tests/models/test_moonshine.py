"""Moonshine tiny-en (`models.moonshine_asr`) on the recorded LibriVox clips: accuracy, the
English-only contract, short input, prefixes (what streaming partials rely on) and concurrent
calls. The engine is built once, through `models.factory` as the ASR deployment builds it; the
file runs in a few seconds.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from voxserve.bench.wer import edits, normalize
from voxserve.client import read_wav
from voxserve.config import AsrOptions
from voxserve.models.factory import build_asr
from voxserve.models.moonshine_asr import MoonshineEngine
from voxserve.models.weights import WeightsError
from tests.speech import clips, wer

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def moonshine() -> MoonshineEngine:
    engine = build_asr(AsrOptions(engine="moonshine"))
    assert isinstance(engine, MoonshineEngine)
    return engine


@pytest.fixture(scope="module")
def recorded() -> list[tuple[np.ndarray, str]]:
    return [(read_wav(wav, 16_000), text) for wav, text in clips()]


def _words(text: str) -> list[str]:
    """Words as written, lower-cased, punctuation around them dropped. Hyphenated words stay one
    word: a cut inside "self-ish" must count as one changed word, not two."""
    return [w for w in (re.sub(r"^[^\w]+|[^\w]+$", "", t.lower()) for t in text.split()) if w]


def test_moonshine_wer_on_recorded_clips(moonshine: MoonshineEngine, recorded) -> None:
    errors = words = 0
    for audio, reference in recorded:
        tr = moonshine.transcribe(audio, "en")
        assert tr.language == "en" and tr.words == ()
        assert tr.decode_seconds > 0 and abs(tr.audio_seconds - audio.size / 16_000) < 1e-6
        assert wer(reference, tr.text) < 0.2, tr.text  # measured: at most 0.125 (one word in 8)
        errors += edits(normalize(reference), normalize(tr.text))
        words += len(normalize(reference))
    # measured: 2 edits in 71 words (0.028)
    assert errors / words <= 0.10


def test_moonshine_decodes_english_and_refuses_requests_without_it(moonshine: MoonshineEngine,
                                                                  recorded) -> None:
    audio, reference = recorded[0]
    for request in (None, "en", "en-US", ("en", "es"), "es-MX,en-US", "eng"):
        tr = moonshine.transcribe(audio, request)
        assert tr.language == "en" and wer(reference, tr.text) < 0.2, (request, tr.text)
    for request in ("es", "es-MX", ("fr", "de"), "fr,de"):
        with pytest.raises(ValueError, match="English only"):
            moonshine.transcribe(audio, request)
    with pytest.raises(ValueError, match="xx"):  # not a language at all: the languages module says so
        moonshine.transcribe(audio, "xx")


def test_moonshine_returns_nothing_for_empty_or_very_short_audio(moonshine: MoonshineEngine) -> None:
    # 894 samples is one short of what the encoder's convolutions accept
    for n in (0, 1, 100, 894, 1599):
        tr = moonshine.transcribe(np.zeros(n, np.float32))
        assert tr.text == "" and tr.words == () and tr.language == "en"
        assert tr.audio_seconds == n / 16_000
    assert moonshine.transcribe(np.zeros((1, 0), np.float32)).text == ""


def test_moonshine_prefix_of_a_clip_decodes_to_a_prefix_of_its_words(moonshine: MoonshineEngine,
                                                                     recorded) -> None:
    # A streaming partial is a decode of the turn so far; the final decode must extend it. The
    # cut falls anywhere, so the partial's last word may be half a word ("ill-spursed").
    for audio, _ in recorded:
        full = _words(moonshine.transcribe(audio).text)
        partial = _words(moonshine.transcribe(audio[: int(audio.size * 0.6)]).text)
        settled = partial[:-1]
        assert settled == full[: len(settled)], (partial, full)
        assert len(settled) >= 0.4 * len(full), (partial, full)


def test_moonshine_concurrent_calls_match_sequential(moonshine: MoonshineEngine, recorded) -> None:
    audios = [audio for audio, _ in recorded] * 2
    sequential = [moonshine.transcribe(a).text for a in audios]
    with ThreadPoolExecutor(2) as pool:
        concurrent = list(pool.map(lambda a: moonshine.transcribe(a).text, audios))
    assert concurrent == sequential


def test_moonshine_accepts_and_ignores_prompt_phrases_and_word_times(moonshine: MoonshineEngine,
                                                                    recorded) -> None:
    audio, _ = recorded[1]
    plain = moonshine.transcribe(audio)
    biased = moonshine.transcribe(audio, "en", "Dashwood family.", phrases=("Dashwood",),
                                  word_timestamps=True)
    assert biased.text == plain.text and biased.words == ()


def test_moonshine_refuses_a_model_file_that_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    import voxserve.models.moonshine_asr as module

    pins = dict(module.MOONSHINE_SHA256)
    first = next(iter(pins))
    pins[first] = "0" * 64
    monkeypatch.setattr(module, "MOONSHINE_SHA256", pins)
    with pytest.raises(WeightsError, match="0" * 64):
        MoonshineEngine(warm_up=False)
