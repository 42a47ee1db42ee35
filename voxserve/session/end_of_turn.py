"""Semantic end of turn: how much silence to wait for, given what the user said and how.

Plain server VAD ends a turn after a fixed silence. The semantic modes (GA `semantic_vad`, Voice
Live `azure_semantic_vad*` and any `end_of_utterance_detection`) instead wait an amount that
depends on two signals gathered at the first pause (200 ms of silence):

- the audio model (Smart Turn v3.2): P(turn complete) from the prosody of the last 8 s, back in
  40-90 ms;
- the transcript of the speculative decode started at the same pause: does it end like a finished
  sentence, or on a conjunction, article, preposition, filler or trailing comma? It arrives when
  the decode does (about a second on the CPU default), which is why it is only used to wait
  *longer* or to end a wait the audio model could not settle.

The wait is then: `fast` when the audio model is confident and the transcript (if any) agrees;
`max` (the timeout) when the transcript says the sentence is unfinished or while no signal has
settled it; `mid` when the transcript looks complete but the audio model is unsure. Each
eagerness level (and Voice Live threshold level) is one row of these three waits. The decision is
a pure function so the turn-taking benchmark replays exactly what the session runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voxserve.protocol.session_config import TurnDetection

SEMANTIC_TYPES = {"semantic_vad", "azure_semantic_vad", "azure_semantic_vad_en",
                  "azure_semantic_vad_multilingual"}


@dataclass(frozen=True)
class Waits:
    fast: int  # ms of silence when both signals say the turn is complete
    mid: int  # ms when the words look complete but the audio model is unsure
    max: int  # ms when the sentence is unfinished, or nothing settled it (the timeout)
    confident: float = 0.5  # audio-model probability taken as "complete"


# One row per GA eagerness. "high" answers soonest and so cuts off more; "low" lets the user
# think. "auto" is "medium", as in the reference service. The confidence bars are above Smart
# Turn's nominal 0.5: on the 51-turn set of bench/turn_taking.py it scored >= 0.5 at 26 of 34
# mid-sentence pauses, and raising the bar for medium from 0.6 to 0.8 cut premature ends from 22
# to 12 at the same median latency (368 ms). That set both tuned and measures these values.
EAGERNESS = {
    "high": Waits(fast=200, mid=350, max=800, confident=0.6),
    "medium": Waits(fast=250, mid=500, max=1500, confident=0.8),
    "low": Waits(fast=400, mid=800, max=2500, confident=0.9),
}
EAGERNESS["auto"] = EAGERNESS["medium"]
# Voice Live's threshold level is the confidence needed to call the utterance finished: a low
# threshold ends turns soonest (GA's high eagerness).
THRESHOLD_LEVEL = {"low": "high", "medium": "medium", "default": "medium", "high": "low"}


def waits_for(td: TurnDetection) -> Waits | None:
    """The semantic waits this turn detection asks for, or None for plain silence VAD."""
    eou = td.end_of_utterance_detection
    if td.type == "semantic_vad":
        return EAGERNESS[td.eagerness or "auto"]
    if td.type not in SEMANTIC_TYPES and eou is None:
        return None
    base = EAGERNESS[THRESHOLD_LEVEL[eou.threshold_level if eou else "default"]]
    if eou is None:
        return base
    # timeout_ms is "the longest wait for semantic completion"; the quicker waits stay below it
    top = max(eou.timeout_ms, 1)
    return Waits(fast=min(base.fast, top), mid=min(base.mid, top), max=top,
                 confident=base.confident)


# Words a finished English sentence rarely ends on: conjunctions, articles, prepositions,
# possessives, auxiliaries and fillers. Measured on the turn-taking set (bench/turn_taking.py).
_UNFINISHED_LAST = frozenset("""
a an the and but or nor so because since although though if unless when while whereas until
that which who whom whose where to of in on at by for with from into onto about as than like
my your his her its our their this these those some any every no
is are was were be been being am do does did have has had will would shall should can could may
might must not very more most um uh er erm hmm mm ah i we you he she they it's i'm
""".split())
_FILLERS = frozenset("um uh er erm ah hmm mm mhm".split())
# What a listener says to keep the speaker going; a burst of only these does not interrupt.
# Phrases count whole: "i see" is a backchannel, "i" or "it" alone is not.
_BACKCHANNEL = _FILLERS | frozenset("""
mm-hmm uh-huh uhhuh mmhmm yeah yep yes ok okay right sure oh aha ah alright
""".split())
_BACKCHANNEL_PHRASES = frozenset({"i see", "got it"})

_WORD = re.compile(r"[a-z][a-z'-]*")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def text_complete(text: str) -> bool | None:
    """Does the transcript read as a finished utterance? None when there is nothing to judge."""
    stripped = text.strip()
    ws = words(stripped)
    if not ws:
        return None
    if stripped.endswith(("...", "…", ",", "-", "—", ";", ":")):
        return False
    return ws[-1] not in _UNFINISHED_LAST


def required_silence_ms(waits: Waits, audio_p: float | None, text_ok: bool | None) -> int:
    """Silence to wait before ending the turn, from the signals available so far."""
    if text_ok is False:
        return waits.max
    confident = audio_p is not None and audio_p >= waits.confident
    if text_ok is None:
        # only the audio model so far: a confident "complete" ends the turn soon; an unsure one
        # waits for the transcript (or the timeout)
        return waits.fast if confident else waits.max
    return waits.fast if confident else waits.mid


def is_backchannel(text: str) -> bool:
    """True when a transcript holds no content words (empty, a filler or a backchannel)."""
    ws = words(text)
    return not ws or all(w in _BACKCHANNEL for w in ws) or " ".join(ws) in _BACKCHANNEL_PHRASES


def remove_fillers(text: str) -> str:
    """Voice Live `remove_filler_words`: drop um/uh-style fillers from a user transcript."""
    kept = [t for t in text.split() if re.sub(r"[^a-z]", "", t.lower()) not in _FILLERS]
    return " ".join(kept)
