"""Silence trimming of synthesized speech (models/speech_trim.py) on built signals."""

from __future__ import annotations

import numpy as np
import pytest

from voxserve.models.base import Phone, SpeechChunk, Word
from voxserve.models.speech_trim import (
    CLAUSE_PAUSE_S,
    SENTENCE_PAUSE_S,
    WORD_PAUSE_S,
    pause_after,
    trimmed,
    voiced_span,
)

pytestmark = pytest.mark.unit
RATE = 24_000


def _padded(lead_s: float, voiced_s: float, tail_s: float) -> np.ndarray:
    t = np.arange(int(voiced_s * RATE)) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.concatenate([np.zeros(int(lead_s * RATE), np.float32), tone,
                           np.zeros(int(tail_s * RATE), np.float32)])


@pytest.mark.parametrize(("text", "pause"), [
    ("It is sunny.", SENTENCE_PAUSE_S), ("Really?", SENTENCE_PAUSE_S), ('He said "go."', SENTENCE_PAUSE_S),
    ("In Paris,", CLAUSE_PAUSE_S), ("first; ", CLAUSE_PAUSE_S), ("the weather in", WORD_PAUSE_S),
    ("", 0.0),
])
def test_pause_follows_the_last_mark(text: str, pause: float) -> None:
    assert pause_after(text) == pause


def test_voiced_span_finds_the_tone_inside_the_padding() -> None:
    audio = _padded(0.3, 1.0, 0.4)
    start, end = voiced_span(audio, RATE)
    assert abs(start / RATE - 0.3) <= 0.006
    assert 1.3 <= end / RATE <= 1.3 + 0.045


def test_silence_and_empty_audio_have_no_voiced_span() -> None:
    assert voiced_span(np.zeros(RATE, np.float32), RATE) == (0, 0)
    assert voiced_span(np.zeros(0, np.float32), RATE) == (0, 0)


def test_a_quiet_tail_above_the_floor_is_kept() -> None:
    # a decaying release 40 dB under the peak is still speech and must not be cut
    audio = _padded(0.2, 0.5, 0.0)
    tail = _padded(0.0, 0.2, 0.3) * 0.01
    start, end = voiced_span(np.concatenate([audio, tail]), RATE)
    assert end / RATE >= 0.2 + 0.5 + 0.2


def test_trimmed_shifts_words_with_the_audio_and_adds_the_pause() -> None:
    chunk = SpeechChunk(audio=_padded(0.3, 1.0, 0.4), sample_rate=RATE, text="hello there",
                        words=(Word("hello", 0.3, 0.8), Word("there", 0.8, 1.35)))
    first = trimmed(chunk)
    assert first.audio.size / RATE == pytest.approx(1.0 + 0.005 + 0.04, abs=0.006)
    assert first.words[0].start_s == pytest.approx(0.005, abs=0.006)
    # a word running into the cut padding ends with the audio, never after it
    assert first.words[-1].end_s <= first.audio.size / RATE
    later = trimmed(chunk, pause_before_s=SENTENCE_PAUSE_S)
    assert later.audio.size - first.audio.size == int(SENTENCE_PAUSE_S * RATE)
    assert not later.audio[:int(SENTENCE_PAUSE_S * RATE)].any()
    assert later.words[0].start_s == pytest.approx(first.words[0].start_s + SENTENCE_PAUSE_S)
    assert later.text == chunk.text


def test_trimmed_shifts_phonemes_and_drops_those_in_the_cut_silence() -> None:
    chunk = SpeechChunk(audio=_padded(0.3, 1.0, 0.4), sample_rate=RATE, text="hi",
                        phones=(Phone(".", 0.0, 0.2), Phone("h", 0.3, 0.5), Phone("I", 0.5, 1.35),
                                Phone(".", 1.4, 1.7)))
    out = trimmed(chunk, pause_before_s=CLAUSE_PAUSE_S)
    assert [p.symbol for p in out.phones] == ["h", "I"]
    assert out.phones[0].start_s == pytest.approx(CLAUSE_PAUSE_S + 0.005, abs=0.006)
    assert out.phones[-1].end_s <= out.audio.size / RATE


def test_trimming_twice_changes_nothing_more() -> None:
    once = trimmed(SpeechChunk(audio=_padded(0.3, 1.0, 0.4), sample_rate=RATE, text="x"))
    twice = trimmed(once)
    assert twice.audio.size == once.audio.size
