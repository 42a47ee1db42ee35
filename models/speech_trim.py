"""Silence around synthesized speech: cut it, then put back only the pause the text calls for.

TTS models pad every call with silence (hibari: 240-300 ms before the first phoneme and ~400 ms
after the last, measured), so an answer spoken piece by piece would start ~0.3 s late and pause
~0.7 s between pieces. Each piece is trimmed to its voiced span and later pieces get a pause
chosen from how the previous piece ended: a sentence end, a clause mark, or a bare word boundary.

Word and phoneme times move with the audio, so truncation at a barge-in, word timestamps and
visemes stay exact.
"""

from __future__ import annotations

import numpy as np

from .base import Phone, SpeechChunk, Word

WINDOW_S = 0.005
# Below the piece's peak by this much counts as silence: hibari's padding is digital silence
# (about -140 dBFS) and its quietest phoneme tails sit ~35-40 dB under the peak.
FLOOR_DB = 50.0
# Kept around the voiced span: the first window over the floor is already the onset, while a
# final fricative or release decays under the floor for a few tens of milliseconds.
LEAD_KEEP_S = 0.005
TAIL_KEEP_S = 0.04

SENTENCE_PAUSE_S = 0.3
CLAUSE_PAUSE_S = 0.15
WORD_PAUSE_S = 0.04  # a first piece cut at a word boundary: keep the words apart, no more
_SENTENCE_ENDS = ".!?…"
_CLAUSE_ENDS = ",;:\u2014\u2013-"
_CLOSERS = "\"')]”’»"


def pause_after(text: str) -> float:
    """Seconds of silence to leave after a piece of speech that reads `text`."""
    end = text.rstrip().rstrip(_CLOSERS)
    if not end:
        return 0.0
    if end[-1] in _SENTENCE_ENDS:
        return SENTENCE_PAUSE_S
    if end[-1] in _CLAUSE_ENDS:
        return CLAUSE_PAUSE_S
    return WORD_PAUSE_S


def window_power(audio: np.ndarray, window: int) -> np.ndarray:
    """Mean power of each whole window of `window` samples (a partial last window is left out)."""
    n = audio.size // window
    return np.square(audio[:n * window].astype(np.float64)).reshape(n, window).mean(axis=1)


def voiced_span(audio: np.ndarray, rate: int) -> tuple[int, int]:
    """First and one-past-last sample of the audible part (0, 0 when there is none)."""
    window = max(1, int(rate * WINDOW_S))
    power = window_power(audio, window)
    if power.size == 0:
        return (0, 0)
    peak = float(power.max())
    if peak <= 0.0:
        return (0, 0)
    loud = np.flatnonzero(power >= peak * 10.0 ** (-FLOOR_DB / 10.0))
    start = max(0, int(loud[0]) * window - int(rate * LEAD_KEEP_S))
    end = min(audio.size, (int(loud[-1]) + 1) * window + int(rate * TAIL_KEEP_S))
    return (start, end)


def trimmed(chunk: SpeechChunk, pause_before_s: float = 0.0) -> SpeechChunk:
    """`chunk` cut to its voiced span, preceded by `pause_before_s` of silence."""
    rate = chunk.sample_rate
    start, end = voiced_span(chunk.audio, rate)
    pad = int(round(pause_before_s * rate))
    audio = chunk.audio[start:end]
    if pad:
        audio = np.concatenate([np.zeros(pad, np.float32), audio])
    shift = (pad - start) / rate
    length = audio.size / rate
    words = tuple(Word(w.text, _clamp(w.start_s + shift, length), _clamp(w.end_s + shift, length),
                       w.probability) for w in chunk.words)
    lead = pad / rate  # phonemes in the cut silence (or in the pause put back) go
    phones = tuple(Phone(p.symbol, max(p.start_s + shift, lead), min(p.end_s + shift, length))
                   for p in chunk.phones if p.end_s + shift > lead and p.start_s + shift < length)
    return SpeechChunk(audio=audio.astype(np.float32, copy=False), sample_rate=rate,
                       text=chunk.text, words=words, phones=phones)


def _clamp(t: float, length: float) -> float:
    return min(max(t, 0.0), length)
