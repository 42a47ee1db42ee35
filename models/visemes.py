"""Visemes (Azure's ids 0-21) from the timed phonemes a TTS engine reports.

The table maps the misaki alphabet that hibari and Kokoro speak onto Azure's en-US viseme set
(Azure's "SSML phonetic alphabets" tables). misaki writes diphthongs and affricates as one
letter ("A" is eɪ, "ʤ" is dʒ); those become two visemes that share the phoneme's time.

Timing follows how the duration predictor spends its frames: a stress mark gets frames of its
own (often more than the vowel after it), but they are the sound of that vowel, so the mark's
time goes to the phoneme after it. The short gaps of word boundaries hold the mouth; a longer
gap (a pause) and the end of speech close it (viseme 0).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .base import Phone

SILENCE = 0
MAX_VISEME = 21

# Letters beyond English (misaki writes other languages in the same alphabet) go to the
# viseme of the nearest English sound by place of articulation and lip rounding.
_GROUPS: dict[int, str] = {
    1: "æəʌɚᵊɐɤ",
    2: "ɑɒa",
    3: "ɔ",
    4: "ɛʊe",
    5: "ɜɝ",
    6: "iɪjᵻɨʝ",
    7: "uwɯyɥ",
    8: "oøœ",
    12: "hçxχʁ",
    13: "ɹɻrꭧ",
    14: "lɫʎ",
    15: "szʂɕʑ",
    16: "ʃʒS",
    17: "ð",
    18: "fvɸβʋ",
    19: "tdnθTɾʔɲɳʈɖɽ",
    20: "kgɡŋɣqɴcɟɰ",
    21: "pbm",
}
VISEMES: dict[str, tuple[int, ...]] = {ch: (vid,) for vid, chars in _GROUPS.items() for ch in chars}
VISEMES.update({
    "A": (4, 6),   # eɪ
    "I": (11,),    # aɪ
    "O": (8, 4),   # oʊ
    "Q": (1, 4),   # British əʊ
    "W": (9,),     # aʊ
    "Y": (10,),    # ɔɪ
    "ʤ": (19, 16), "ʧ": (19, 16), "ʣ": (19, 15), "ʦ": (19, 15), "ʥ": (19, 16), "ʨ": (19, 16),
})
STRESS = frozenset("ˈˌ")
# Marks and punctuation: punctuation carries the pause, so it closes the mouth.
PUNCTUATION = frozenset(".,;:!?…—\"“”()→↓↗↘")
PAUSE_S = 0.12  # a gap between phonemes longer than this closes the mouth


@dataclass(frozen=True)
class Viseme:
    offset_s: float  # from the start of the speech the phonemes were timed in
    viseme_id: int


def visemes(phones: Iterable[Phone]) -> list[Viseme]:
    """The viseme changes of `phones` (in time order), ending with silence after the last one.

    Symbols the table does not know (length marks, tones) extend the phoneme before them.
    """
    out: list[Viseme] = []
    stress_start: float | None = None
    last_end: float | None = None

    def put(offset: float, vid: int) -> None:
        if out and out[-1].viseme_id == vid:
            return
        if out and offset <= out[-1].offset_s:  # two changes at one instant: the later wins
            out.pop()
            if out and out[-1].viseme_id == vid:
                return
        out.append(Viseme(offset, vid))

    for p in phones:
        if last_end is not None and p.start_s - last_end > PAUSE_S:
            put(last_end, SILENCE)
        if p.symbol in STRESS:
            stress_start = p.start_s if stress_start is None else stress_start
            last_end = p.end_s
            continue
        ids = (SILENCE,) if p.symbol in PUNCTUATION else VISEMES.get(p.symbol)
        if ids is None:
            last_end = p.end_s
            continue
        start = stress_start if stress_start is not None else p.start_s
        stress_start = None
        step = (p.end_s - start) / len(ids)
        for k, vid in enumerate(ids):
            put(start + k * step, vid)
        last_end = p.end_s
    if last_end is not None:
        put(last_end, SILENCE)
    return out
