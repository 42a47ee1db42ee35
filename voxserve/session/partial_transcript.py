"""Partial transcripts while the user talks, as append-only deltas.

The wire's `...input_audio_transcription.delta` events can only add text, but a re-decode of the
growing speech buffer may revise its last words ("the wet" -> "the weather"). So a word is sent
once two decodes in a row agree on it and it is not the newest word (which may be cut off by the
end of the audio). Words are compared without case and punctuation, which a recognizer revises as
the sentence goes on; the text sent is the newer decode's.

At the end of the turn the final decode is the truth: the delta that completes the sent words into
it is sent when the sent words are its beginning; otherwise nothing more is sent, and the
`completed` event carries the whole transcript as always.
"""

from __future__ import annotations

import re

_KEY = re.compile(r"[^\w']+")


def _key(word: str) -> str:
    return _KEY.sub("", word).lower()


def _looping(words: list[str], run: int = 3) -> bool:
    """The same word `run` times in a row: a small decoder's loop on a cut-off buffer
    ("amiable, amiable, amiable,"), seen on growing prefixes; people rarely say it."""
    keys = [_key(w) for w in words]
    return any(len(set(keys[i:i + run])) == 1 for i in range(len(keys) - run + 1))


class PartialTranscript:
    """The agreed words of one user item's successive decodes and what was sent of them."""

    def __init__(self) -> None:
        self._previous: list[str] = []
        self._sent: list[str] = []  # the words sent so far, as compared

    @property
    def sent_words(self) -> int:
        return len(self._sent)

    def update(self, hypothesis: str) -> str:
        """The delta to send after a new decode ("" for none)."""
        words = hypothesis.split()
        if _looping(words):
            return ""  # a decoder stuck repeating itself: not evidence for or against any word
        agreed = 0
        for new, old in zip(words[:-1], self._previous, strict=False):
            if _key(new) != _key(old):
                break
            agreed += 1
        self._previous = words
        n = len(self._sent)
        # a decode that revised a sent word adds nothing until the decodes agree past it again
        if agreed <= n or [_key(w) for w in words[:n]] != self._sent:
            return ""
        self._sent += [_key(w) for w in words[n:agreed]]
        return (" " if n else "") + " ".join(words[n:agreed])

    def remainder(self, final: str) -> str | None:
        """The delta that completes the sent words into `final`; None when they are not its
        beginning (the final decode revised a sent word)."""
        words = final.split()
        n = len(self._sent)
        if not n:
            return final
        if [_key(w) for w in words[:n]] != self._sent:
            return None
        rest = " ".join(words[n:])
        return " " + rest if rest else ""
