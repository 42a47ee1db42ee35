"""Splits streamed LLM text into pieces worth synthesizing.

TTS needs whole phrases for natural prosody, but waiting for a full sentence from a CPU LLM
(13-25 tokens/s) adds seconds to the time to first audio when the sentence is long (measured:
2.3 s for a 25-word answer with no comma; with the first piece at 7 words, its wait was still
370 ms p50 at one session). So the first piece ends at the first clause boundary
once it has a few words, else before a conjunction, else after `first_max_words` words at a word
boundary. Later pieces have the earlier audio's playing time as slack (TTS runs ~50x real
time), so they end at sentence boundaries, or at clauses once long.

No cut falls inside a number or a name: a period after an abbreviation or an initial ("Dr.",
"e.g.", "J.") ends no sentence, and a cut between words moves past pairs that read as one
("at 7 pm", "3 million", "New York", "Ray Serve"), because TTS reads each piece as a phrase of
its own: "New" then a pause then "York" sounds broken.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:\u2014]\s")
# Words that start a new phrase: cutting before them keeps each piece's prosody natural.
_PHRASE_START = re.compile(r"\s(?=(?:and|but|or|so|because|which|who|that|when|while|if|"
                           r"although|though|since|until|unless|whereas)\b)", re.IGNORECASE)
_MARKUP = re.compile(r"[*_#`~]+|\[[^\]]*\]\([^)]*\)")
# A period after these (or after one letter: an initial) does not end a sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc e.g i.e a.m p.m u.s u.k approx dept est inc ltd "
    "co corp fig jan feb mar apr jun jul aug sep sept oct nov dec".split())
# Words that go with the number before them.
_NUMBER_WORDS = frozenset(
    "hundred thousand million billion trillion percent am pm a.m. p.m. o'clock dollars euros "
    "pounds cents degrees km kg mb gb minutes hours seconds".split())


def speakable(text: str) -> str:
    """Drop markdown the small models sometimes emit; it would be read out or mispronounced."""
    return _MARKUP.sub("", text)


def _abbreviated(text: str) -> bool:
    """Does `text`, which ends with a period, end with an abbreviation or an initial?"""
    last = text.split()[-1].lower().rstrip(".").lstrip("(\"'")
    return last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())


def _joined(left: str, right: str) -> bool:
    """Do two adjacent words read as one unit (a number with its magnitude or unit, a name)?"""
    if not right or left[-1:] in ",;:":
        return False
    if any(c.isdigit() for c in left) and (right[0].isdigit()
                                           or right.lower().rstrip(".,") in _NUMBER_WORDS):
        return True
    return left[0].isupper() and right[0].isupper() and left != "I"


class TextChunker:
    def __init__(self, first_clause_words: int = 3, first_max_words: int = 5,
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
        for m in _SENTENCE_END.finditer(self._buf):
            if not _abbreviated(self._buf[:m.start() + 1]):
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
        # Only complete words count: the last one may still be growing token by token. A cut
        # also needs the next word (its first letter for a name, all of it after a number), to
        # tell whether the two read as one.
        words = list(re.finditer(r"\S+\s+(?=\S)", self._buf))
        for i in range(self._first_max_words - 1, len(words)):
            left, following = words[i], self._buf[words[i].end():].split()
            complete = i + 1 < len(words)
            if not following or (not complete and any(c.isdigit() for c in left.group())):
                return None
            if not _joined(left.group().split()[0], following[0]):
                return left.end()
        return None
