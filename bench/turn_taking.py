"""Turn-taking benchmark: premature cut-offs, missed ends and end-of-turn latency per mode.

    .venv/bin/python -m bench.turn_taking --out bench-results/turn-taking

A labelled set built from recorded speech: the LibriVox clips in `tests/data` and, when the Debian
package `asterisk-core-sounds-en-g722` is installed, voice-actor prompts (CC-BY-SA) with their
transcripts. Each utterance gives three turns:

- `complete`: the whole utterance, then silence. Right answer: one end of turn, after it.
- `cut`: the utterance stopped at a word boundary mid-sentence (Whisper word times), then silence.
  The user has not finished; ending the turn within `--cut-grace-ms` (900 ms, the longest inserted
  pause) of the cut counts as a premature cut-off.
- `paused`: the utterance with 400-900 ms of silence inserted at a mid-sentence word boundary.
  Ending the turn inside that pause is a premature cut-off.

Every turn also counts as premature if the turn ends anywhere before the utterance's last word
(e.g. between its sentences), and as a missed end if no end comes within 3 s of the last word.

The replay drives the session's own `Listener` (VAD turn detector, pause scope and semantic
judgement) over the audio in 40 ms chunks on the audio clock, so modes are compared on identical
input. The semantic signals are
computed for real at each pause (Smart Turn on the audio so far, Whisper base on the turn so far,
as the session does) and take effect after their measured wall time on this machine, converted to
audio time: the judgement arrives as late as it would in a single-session server. Under load the
decode is slower, so the semantic waits lean on the audio model and the timeout more.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from voxserve.bench.report import environment, pct
from voxserve.audio.formats import AudioFormat
from voxserve.client import read_wav
from voxserve.config import VadOptions
from voxserve.models.base import Transcript
from voxserve.protocol.session_config import EndOfUtterance, TurnDetection
from voxserve.session.end_of_turn import EAGERNESS, Waits, text_complete
from voxserve.session.listener import Heard, Listener, SpeechStarted, TurnEnded
from voxserve.session.tasks import TaskOwner
from voxserve.session.turn import Turn

RATE = 16_000
CHUNK = 640  # 40 ms per append, as a client streaming in real time would
PCM16_16K = AudioFormat("pcm16", 16000)  # no resampling: the listener's own rate
LEAD_S = 0.5
TAIL_S = 3.0
DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
ALLISON = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ALLISON_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")

MODES: dict[str, TurnDetection] = {
    "server_vad 500 ms": TurnDetection(type="server_vad", silence_duration_ms=500),
    "semantic_vad high": TurnDetection(type="semantic_vad", eagerness="high"),
    "semantic_vad medium": TurnDetection(type="semantic_vad", eagerness="medium"),
    "semantic_vad low": TurnDetection(type="semantic_vad", eagerness="low"),
    "azure_semantic_vad default": TurnDetection(
        type="azure_semantic_vad", end_of_utterance_detection=EndOfUtterance()),
}


@dataclass
class LabelledTurn:
    name: str
    kind: str  # complete | cut | paused
    audio: np.ndarray = field(repr=False)
    last_word_end: float  # s, in `audio`: where the user's speech really ends
    hold_from: float = 0.0  # s: a turn end in [hold_from, hold_to) is a premature cut-off
    hold_to: float = 0.0


@dataclass
class Outcome:
    turn: str
    kind: str
    mode: str
    ends: list[float]  # s of audio clock where the detector ended a turn
    premature: bool
    missed: bool
    latency_ms: float | None  # first end at or after the last word, from the VAD's silence start


def _allison(limit: int, min_words: int = 9) -> list[tuple[str, np.ndarray, str]]:
    """Up to `limit` voice-actor prompts (name, 16 kHz audio, transcript) of `min_words` words or
    more, in a fixed shuffled order; bench/asr.py takes shorter ones too."""
    if not ALLISON_TEXT.is_file():
        return []
    import av

    found = []
    for line in gzip.open(ALLISON_TEXT, "rt"):
        name, _, text = line.partition(": ")
        text = text.strip()
        path = ALLISON / f"{name}.g722"
        # whole sentences of some length; prompts that trail off ("...") are unfinished by design
        if len(text.split()) < min_words or text.endswith("...") or not path.is_file():
            continue
        with av.open(str(path), format="g722") as c:
            pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
        found.append((name, pcm.astype(np.float32) / 32768, text))
    random.Random(7).shuffle(found)
    return found[:limit]


def utterances(allison: int) -> list[tuple[str, np.ndarray, str]]:
    out = [(p.stem[-4:], read_wav(p, RATE), p.with_suffix(".txt").read_text().strip())
           for p in sorted(DATA.glob("*.wav"))]
    return out + _allison(allison)


def build_set(asr: Any, allison: int, seed: int = 1) -> list[LabelledTurn]:
    """Three labelled turns per utterance, cut and paused at Whisper word boundaries."""
    rng = random.Random(seed)
    lead = np.zeros(int(LEAD_S * RATE), np.float32)
    tail = np.zeros(int(TAIL_S * RATE), np.float32)
    turns: list[LabelledTurn] = []
    for name, audio, _ in utterances(allison):
        words = asr.transcribe(audio, language="en", word_timestamps=True).words
        if len(words) < 4:
            continue
        last = words[-1].end_s
        # a boundary in the middle third, not after a sentence end
        mids = [i for i in range(len(words) // 3, max(len(words) * 2 // 3, len(words) // 3 + 1))
                if not words[i].text.endswith((".", "?", "!"))] or [len(words) // 2]
        i = rng.choice(mids)
        gap = (words[i].end_s + words[i + 1].start_s) / 2
        cut = int(gap * RATE)
        pause = rng.uniform(0.4, 0.9)
        turns.append(LabelledTurn(name, "complete", np.concatenate([lead, audio, tail]),
                                  LEAD_S + last))
        turns.append(LabelledTurn(name, "cut", np.concatenate([lead, audio[:cut], tail]),
                                  LEAD_S + words[i].end_s, LEAD_S + words[i].end_s,
                                  LEAD_S + words[i].end_s + 0.9))
        gap_audio = np.zeros(int(pause * RATE), np.float32)
        turns.append(LabelledTurn(name, "paused",
                                  np.concatenate([lead, audio[:cut], gap_audio, audio[cut:], tail]),
                                  LEAD_S + last + pause, LEAD_S + words[i].end_s,
                                  LEAD_S + gap + pause))
    return turns


class Signals:
    """The semantic signals at one pause, computed once and shared by every mode (they all see
    the same VAD pauses), with their measured wall times."""

    def __init__(self, asr: Any, eot: Any, cache: Path | None = None) -> None:
        self._asr, self._eot = asr, eot
        self._cache: dict[tuple[str, str, int, int], tuple[float, float, bool | None, float, str]] = {}
        self._file = cache
        if cache is not None and cache.is_file():  # replay policy changes on the same signals
            for row in json.loads(cache.read_text()):
                self._cache[tuple(row[0])] = tuple(row[1])  # type: ignore[index]

    def save(self) -> None:
        if self._file is not None:
            self._file.write_text(json.dumps([[list(k), list(v)] for k, v in self._cache.items()]))

    def at(self, turn: LabelledTurn, start: int, pause: int) -> tuple[float, float, bool | None, float, str]:
        key = (turn.name, turn.kind, start, pause)
        if key not in self._cache:
            audio = turn.audio[start:pause]
            t0 = time.perf_counter()
            p = self._eot.probability(audio)
            p_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            text = self._asr.transcribe(audio, language="en").text
            asr_s = time.perf_counter() - t0
            # the session runs the two concurrently: the words land after the slower of them
            self._cache[key] = (p, p_s, text_complete(text), max(p_s, asr_s), text)
        p, p_s, _, words_s, text = self._cache[key]
        return p, p_s, text_complete(text), words_s, text


class _Timed:
    """Scripted pause signals for the listener: each resolves once the replayed audio reaches
    the sample where the real signal, measured at that pause, would have landed."""

    def __init__(self, turn: LabelledTurn, signals: Signals) -> None:
        self._turn, self._signals = turn, signals
        self.speech_start = 0  # set from SpeechStarted: the start of the turn's audio
        self.now = 0  # replayed samples so far
        self._due: list[tuple[int, asyncio.Future[Any], Any]] = []

    def _at(self, audio: np.ndarray) -> tuple[float, float, bool | None, float, str]:
        # the listener hands over the turn so far: from its start to the pause mark
        return self._signals.at(self._turn, self.speech_start, self.speech_start + audio.size)

    def _later(self, delay_s: float, value: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._due.append((self.now + int(delay_s * RATE), future, value))
        return future

    async def audio_p(self, audio: np.ndarray) -> float | None:
        p, p_s, _, _, _ = self._at(audio)
        return float(await self._later(p_s, p))

    async def decode(self, audio: np.ndarray) -> Transcript | Exception:
        _, _, _, words_s, text = self._at(audio)
        result: Transcript = await self._later(words_s, Transcript(text, "en", audio.size / RATE))
        return result

    def release_due(self) -> bool:
        due = [d for d in self._due if d[0] <= self.now]
        self._due = [d for d in self._due if d[0] > self.now]
        for _, future, value in due:
            if not future.done():
                future.set_result(value)
        return bool(due)


async def _settle() -> None:
    # the scripted signals do no I/O and start no threads: a bounded number of loop turns lets
    # the judgement act on a signal just released
    for _ in range(20):
        await asyncio.sleep(0)


async def replay(turn: LabelledTurn, mode: str, td: TurnDetection, signals: Signals, vad: Any,
                 min_speech_ms: int = 100) -> Outcome:
    """The session's own `Listener` (VAD, pause scope, semantic judgement) over one turn."""
    timed = _Timed(turn, signals)
    ends: list[float] = []
    silence_starts: list[int] = []

    async def on_heard(heard: Heard) -> None:
        if isinstance(heard, SpeechStarted):
            timed.speech_start = heard.audio_start
        elif isinstance(heard, TurnEnded):
            ends.append(timed.now / RATE)
            silence_starts.append(heard.end_sample)
    listener = Listener(vad_factory=lambda: vad, vad=VadOptions(min_speech_ms=min_speech_ms),
                        max_buffer_seconds=120.0, decode=timed.decode, audio_p=timed.audio_p,
                        tasks=TaskOwner(asyncio.ensure_future),
                        begin_turn=lambda t: Turn(speech_end=t), on_heard=on_heard)
    listener.configure(td)
    pcm = PCM16_16K.encode(turn.audio)
    step = CHUNK * 2  # bytes of PCM16
    for offset in range(0, len(pcm) - step + 1, step):
        timed.now = offset // 2 + CHUNK
        await listener.append(pcm[offset:offset + step], PCM16_16K)
        await _settle()
        if timed.release_due():
            await _settle()
    listener.cancel()
    await _settle()
    premature = any(e < turn.last_word_end - 0.05 or turn.hold_from <= e < turn.hold_to
                    for e in ends)
    final = [(e, s) for e, s in zip(ends, silence_starts, strict=True)
             if e >= turn.last_word_end - 0.05]
    missed = not final or final[0][0] > turn.last_word_end + TAIL_S - 0.1
    latency = None if not final else round((final[0][0] - final[0][1] / RATE) * 1000, 1)
    return Outcome(f"{turn.name}/{turn.kind}", turn.kind, mode, ends, premature, missed, latency)


async def replay_all(turns: list[LabelledTurn], signals: Signals, vad: Any) -> list[Outcome]:
    return [await replay(t, mode, td, signals, vad)
            for t in tqdm(turns, desc="turns", unit="turn")
            for mode, td in MODES.items()]


class CachedVad:
    """Silero's answers per window, kept: every mode and every candidate table replays the same
    audio in the same windows, so the VAD runs once per window of the set."""

    def __init__(self, vad: Any) -> None:
        self._vad = vad
        self.window_samples = vad.window_samples
        self._seen: dict[bytes, float] = {}

    def reset(self) -> None:
        self._vad.reset()

    def probability(self, window: np.ndarray) -> float:
        key = window.tobytes()
        if key not in self._seen:
            self._seen[key] = self._vad.probability(window)
        return self._seen[key]


def halves(turns: list[LabelledTurn]) -> tuple[list[LabelledTurn], list[LabelledTurn]]:
    """(tune, test): utterances alternate in name order, so each half has LibriVox clips and
    prompts and the three turns of one utterance stay together."""
    names = sorted({t.name for t in turns})
    tune_names = set(names[0::2])
    return ([t for t in turns if t.name in tune_names], [t for t in turns if t.name not in tune_names])


# The semantic waits searched for "medium" (auto): the fast and mid waits and the audio model's
# bar; the timeout stays 1500 ms.
GRID_FAST = (150, 200, 250, 300)
GRID_MID = (250, 350, 500, 700)
GRID_CONFIDENT = (0.5, 0.6, 0.7, 0.8, 0.9)
MEDIUM = "semantic_vad medium"


async def _medium(turns: list[LabelledTurn], waits: Waits, signals: Signals, vad: Any) -> dict[str, Any]:
    saved = dict(EAGERNESS)
    EAGERNESS["medium"] = EAGERNESS["auto"] = waits
    try:
        rows = [await replay(t, MEDIUM, MODES[MEDIUM], signals, vad) for t in turns]
    finally:
        EAGERNESS.update(saved)
    lat = [o.latency_ms for o in rows if o.kind == "complete" and o.latency_ms is not None]
    return {"waits": asdict(waits), "turns": len(rows), "premature": sum(o.premature for o in rows),
            "missed": sum(o.missed for o in rows), "complete_ms": pct(lat)}


async def tune(turns: list[LabelledTurn], signals: Signals, vad: Any) -> dict[str, Any]:
    """Choose "medium" on the tune half: the lowest median end-of-turn latency on complete turns
    whose premature ends and missed ends are no more than today's table has on that half; then
    measure today's table and the choice on the test half, which took no part in the choice."""
    tune_set, test_set = halves(turns)
    today = EAGERNESS["medium"]
    base = await _medium(tune_set, today, signals, vad)
    candidates = [Waits(fast=f, mid=m, max=today.max, confident=c)
                  for f in GRID_FAST for m in GRID_MID if m >= f for c in GRID_CONFIDENT]
    scored = []
    for waits in tqdm(candidates, desc="tuning medium", unit="table"):
        r = await _medium(tune_set, waits, signals, vad)
        if r["premature"] <= base["premature"] and r["missed"] <= base["missed"]:
            scored.append((r["complete_ms"].get("p50", 1e9), r["premature"], r["complete_ms"].get("p95", 1e9), r))
    best = min(scored, key=lambda x: x[:3])[3] if scored else base
    chosen = Waits(**best["waits"])
    return {"tune_utterances": len(tune_set) // 3, "test_utterances": len(test_set) // 3,
            "tune": {"today": base, "chosen": best},
            "test": {"today": await _medium(test_set, today, signals, vad),
                     "chosen": await _medium(test_set, chosen, signals, vad)}}


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in MODES:
        rows = [o for o in outcomes if o.mode == mode]
        lat_complete = [o.latency_ms for o in rows if o.kind == "complete" and o.latency_ms is not None]
        lat_all = [o.latency_ms for o in rows if o.latency_ms is not None]
        out[mode] = {
            "turns": len(rows),
            "premature": {k: sum(o.premature for o in rows if o.kind == k)
                          for k in ("complete", "cut", "paused")},
            "premature_total": sum(o.premature for o in rows),
            "missed_ends": sum(o.missed for o in rows),
            "eot_latency_complete_ms": pct(lat_complete),
            "eot_latency_all_ms": pct(lat_all),
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [
        "# Turn-taking benchmark", "",
        f"Words at the pause from {report.get('asr', 'whisper')}.", "",
        f"{report['turns']} labelled turns ({report['utterances']} utterances x complete / cut / "
        "paused), replayed in 40 ms chunks. End-of-turn latency: from the VAD's silence start to "
        "the end of turn, on the complete turns. Premature: an end of turn before the last word, "
        "inside an inserted pause, or within 900 ms of a mid-sentence cut.", "",
        "| mode | premature (complete / cut / paused) | missed ends | EOT p50 ms | EOT p95 ms |",
        "|---|---|---|---|---|",
    ]
    for mode, r in s.items():
        pm = r["premature"]
        lat = r["eot_latency_complete_ms"]
        lines.append(f"| {mode} | {r['premature_total']} ({pm['complete']} / {pm['cut']} / "
                     f"{pm['paused']}) | {r['missed_ends']} | {lat.get('p50', '-')} | "
                     f"{lat.get('p95', '-')} |")
    sig = report["signals"]
    lines += ["", "Signals at the pauses (each pause judged once, shared by the semantic modes):",
              f"- pauses judged: {sig['pauses']}; Smart Turn wall time p50 {sig['smart_turn_ms']['p50']} ms, "
              f"words (decode) p50 {sig['words_ms']['p50']} ms / p95 {sig['words_ms']['p95']} ms",
              f"- at a true end (complete and paused turns): Smart Turn >= 0.5 on {sig['final_audio_ok']}, "
              f"words read complete on {sig['final_text_ok']}",
              f"- at a cut or inserted pause: Smart Turn >= 0.5 on {sig['mid_audio_ok']}, "
              f"words read complete on {sig['mid_text_ok']}", ""]
    if "tuning" in report:
        t = report["tuning"]
        lines += ["## Tuning semantic_vad medium (auto)", "",
                  f"Searched on {t['tune_utterances']} utterances (every other one by name), "
                  f"reported on the other {t['test_utterances']}, which took no part in the choice.", "",
                  "| half | table | fast / mid / max ms, bar | premature | missed | complete EOT p50 / p95 ms |",
                  "|---|---|---|---|---|---|"]
        for half in ("tune", "test"):
            for name in ("today", "chosen"):
                r = t[half][name]
                w = r["waits"]
                lines.append(f"| {half} | {name} | {w['fast']} / {w['mid']} / {w['max']}, "
                             f"{w['confident']} | {r['premature']} of {r['turns']} | {r['missed']} | "
                             f"{r['complete_ms'].get('p50', '-')} / {r['complete_ms'].get('p95', '-')} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench-results/turn-taking")
    ap.add_argument("--allison", type=int, default=12,
                    help="voice-actor prompts to add to the LibriVox clips (if installed)")
    ap.add_argument("--asr-threads", type=int, default=2)
    ap.add_argument("--asr", choices=("moonshine", "whisper"), default="moonshine",
                    help="the engine whose words judge the pause: moonshine, as English sessions "
                         "use by default (asr.english), or whisper (asr.english: null)")
    ap.add_argument("--signals-cache", type=Path,
                    help="reuse the signals measured by an earlier run (policy changes only)")
    ap.add_argument("--tune", action="store_true",
                    help="also search the semantic waits on one half of the utterances and "
                         "report both tables on the other half")
    args = ap.parse_args(argv)

    from voxserve.models.silero_vad import SileroVad
    from voxserve.models.smart_turn import SmartTurn
    from voxserve.models.whisper_asr import FasterWhisperEngine

    print(f"[turn-taking] loading Whisper base (word times for the set), {args.asr} (the "
          "pause's words), Smart Turn v3.2 and Silero VAD", flush=True)
    whisper = FasterWhisperEngine(cpu_threads=args.asr_threads)
    if args.asr == "moonshine":
        from voxserve.models.moonshine_asr import MoonshineEngine
        judge_asr: Any = MoonshineEngine(cpu_threads=1)
    else:
        judge_asr = whisper
    signals = Signals(judge_asr, SmartTurn(), args.signals_cache)
    vad = CachedVad(SileroVad())
    turns = build_set(whisper, args.allison)
    print(f"[turn-taking] {len(turns)} labelled turns from {len(turns) // 3} utterances",
          flush=True)
    outcomes = asyncio.run(replay_all(turns, signals, vad))
    signals.save()
    judged = list(signals._cache.items())

    def share(rows: list[Any], index: int, test: Any) -> str:
        return f"{sum(1 for r in rows if test(r[1][index]))}/{len(rows)}"
    # A pause inside a cut's or an inserted pause's hold window is a mid-sentence pause (a cut
    # turn's last word is its cut, so this test comes first); one at or after a turn's true last
    # word is a final pause.
    by_name = {(t.name, t.kind): t for t in turns}
    final, mid = [], []
    for row in judged:
        (name, kind, _, pause) = row[0]
        turn = by_name[(name, kind)]
        if turn.hold_from and turn.hold_from <= pause / RATE < turn.hold_to:
            mid.append(row)
        elif pause / RATE >= turn.last_word_end:
            final.append(row)
    report = {
        "env": environment(), "turns": len(turns), "utterances": len(turns) // 3,
        "summary": summarise(outcomes),
        "signals": {
            "pauses": len(judged),
            "smart_turn_ms": pct([r[1][1] * 1000 for r in judged]),
            "words_ms": pct([r[1][3] * 1000 for r in judged]),
            "final_audio_ok": share(final, 0, lambda p: p >= 0.5),
            "final_text_ok": share(final, 2, lambda ok: ok is True),
            "mid_audio_ok": share(mid, 0, lambda p: p >= 0.5),
            "mid_text_ok": share(mid, 2, lambda ok: ok is True),
        },
        "outcomes": [asdict(o) for o in outcomes],
        "pauses": [{"turn": f"{k[0]}/{k[1]}", "pause_s": k[3] / RATE, "audio_p": round(v[0], 3),
                    "text": v[4], "text_complete": v[2]} for k, v in judged],
    }
    report["asr"] = args.asr
    if args.tune:
        report["tuning"] = asyncio.run(tune(turns, signals, vad))
        signals.save()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
