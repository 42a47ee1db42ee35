"""Splits streamed LLM text into pieces worth synthesizing.

TTS needs whole phrases for natural prosody, but waiting for a full sentence from a CPU LLM
(13-25 tokens/s) would add most of a second to the time to first audio. So the first piece may
end at a clause boundary (comma, semicolon, colon) once it has a few words; later pieces end at
sentence boundaries, or at clauses once they are long.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:\u2014]\s")
_MARKUP = re.compile(r"[*_#`~]+|\[[^\]]*\]\([^)]*\)")


def speakable(text: str) -> str:
    """Drop markdown the small models sometimes emit; it would be read out or mispronounced."""
    return _MARKUP.sub("", text)


class TextChunker:
    def __init__(self, first_clause_words: int = 3, clause_words: int = 12) -> None:
        self._buf = ""
        self._first = True
        self._first_clause_words = first_clause_words
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
        return None
