"""Splits streamed LLM text into pieces worth synthesizing.

TTS needs whole phrases for natural prosody, but waiting for a full sentence from a CPU LLM
(13-25 tokens/s) adds seconds to the time to first audio when the sentence is long (measured:
2.3 s for a 25-word answer with no comma). So the first piece ends at the first clause boundary
once it has a few words, else before a conjunction, else after `first_max_words` words at a word
boundary. Later pieces have the earlier audio's playing time as slack (TTS runs ~50x real
time), so they end at sentence boundaries, or at clauses once long.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:\u2014]\s")
# Words that start a new phrase: cutting before them keeps each piece's prosody natural.
_PHRASE_START = re.compile(r"\s(?=(?:and|but|or|so|because|which|who|that|when|while|if|"
                           r"although|though|since|until|unless|whereas)\b)", re.IGNORECASE)
_MARKUP = re.compile(r"[*_#`~]+|\[[^\]]*\]\([^)]*\)")


def speakable(text: str) -> str:
    """Drop markdown the small models sometimes emit; it would be read out or mispronounced."""
    return _MARKUP.sub("", text)


class TextChunker:
    def __init__(self, first_clause_words: int = 3, first_max_words: int = 7,
                 clause_words: int = 12) -> None:
        self._buf = ""
        self._first = True
        self._first_clause_words = first_clause_words
        self._first_max_words = first_max_words
        self._clause_words = clause_words

    def push(self, text: str) -> list[str]:
        self._buf += text
        pieces: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                return pieces
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            if piece:
                pieces.append(piece)
                self._first = False

    def flush(self) -> list[str]:
        piece, self._buf = self._buf.strip(), ""
        return [piece] if piece else []

    def _find_cut(self) -> int | None:
        m = _SENTENCE_END.search(self._buf)
        if m:
            return m.end()
        need = self._first_clause_words if self._first else self._clause_words
        for m in _CLAUSE_END.finditer(self._buf):
            if len(self._buf[:m.end()].split()) >= need:
                return m.end()
        if not self._first:
            return None
        for m in _PHRASE_START.finditer(self._buf):
            if len(self._buf[:m.start()].split()) >= self._first_clause_words + 1:
                return m.start() + 1
        # Only complete words count: the last one may still be growing token by token.
        words = list(re.finditer(r"\S+\s", self._buf))
        if len(words) >= self._first_max_words:
            return words[self._first_max_words - 1].end()
        return None
