"""ASR engines compared: WER and decode time of Moonshine tiny-en and Whisper base, clean and in
noise, and what Moonshine's streaming re-decodes cost.

    .venv/bin/python -m bench.asr [--out docs/perf/asr-report.md] [--allison 80] [--snr 10]

Engines are built by `models.factory.build_asr`, as the server's ASR stage builds them:
`AsrOptions(engine="moonshine")` (one thread) and the default `AsrOptions()` (Whisper base int8,
greedy, two threads). Every decode asks for English.

Speech:
- librivox: the five LibriVox clips in `tests/data` (one reader, 3-7 s, public domain);
- allison: voice-actor prompts of Debian's `asterisk-core-sounds-en-g722` (one speaker,
  telephone-prompt wording, CC-BY-SA), loaded by `bench.turn_taking`'s loader: the first
  `--allison` of its fixed shuffled order that last `--min-seconds` to `--max-seconds` and
  contain speech. Their transcripts lose stage directions and spell out `*` and `#` (`spoken`).

Each utterance is framed as the session frames a turn for the ASR: `--pad-before-ms` (300, the
default prefix padding) before it and `--pad-after-ms` (200, the pause at which the session
starts the decode that becomes the final transcript) after it. Moonshine needs that framing: on
tightly cut prompts its WER was 6.3 % clean and 12.5 % noisy (Whisper's 3.8 and 6.9), and one
prompt whose speech ran to its last 0.1 s decoded as "3." alone. Each framed utterance is decoded
clean and mixed with noise at `--snr` dB over its whole length: `bench.noise`'s babble, fan and
clicks in turn (utterance i gets kind i mod 3, seeded per utterance), at the utterance's own
active speech level (so every mix is at the SNR), scaled down if it would clip.

Figures: WER as total edits over total reference words (`voxserve.bench.wer`, which normalises
case, punctuation and numbers), so Moonshine's cased, punctuated output is not penalised for its
style; per-utterance wall time of `transcribe` (p50/p95, nearest rank); wall and CPU time (all
of the process's threads) per second of audio. Streaming (Moonshine only): each LibriVox clip's
prefixes every `--step-ms` of audio decoded in turn, as partial transcripts of a growing turn
would be (with the lead padding, never the trailing pause: a partial ends mid-speech); the share
of a core is the CPU time of all those decodes over the clip's duration.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from voxserve.bench.noise import NOISES, _active_power, _fit, at_snr, load_clips, make_noise
from voxserve.bench.report import environment, percentile
from voxserve.bench.turn_taking import _allison
from voxserve.bench.wer import edits, normalize
from voxserve.config import AsrOptions
from voxserve.models.base import AsrEngine

RATE = 16_000
ENGINES: dict[str, AsrOptions] = {
    "moonshine-tiny-en": AsrOptions(engine="moonshine"),
    "whisper-base": AsrOptions(),
}
SETS = ("librivox", "allison")
CONDITIONS = ("clean", "noisy")


@dataclass
class Utterance:
    set: str
    name: str
    audio: np.ndarray
    text: str
    noise: str = ""  # the kind mixed into its noisy version


@dataclass
class Decode:
    engine: str
    set: str
    condition: str
    name: str
    noise: str
    audio_s: float
    wall_s: float
    cpu_s: float
    edits: int
    words: int
    text: str
    reference: str
    capped: bool  # Moonshine stopped at its token cap


def spoken(prompt_text: str) -> str:
    """What the voice actor says: the transcript file's stage directions ("(7 seconds of
    silence)", "[ascending tones]") are not speech, and she reads the keypad's symbols."""
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", prompt_text)
    return " ".join(text.replace("*", " star ").replace("#", " pound ").split())


def utterances(allison: int, min_s: float, max_s: float) -> tuple[list[Utterance], list[np.ndarray]]:
    """The two sets, and the recordings babble is made of (`bench.noise`'s)."""
    clips, recordings = load_clips(5)
    out = [Utterance("librivox", c.name, c.audio, c.text) for c in clips]
    prompts = [(n, a, spoken(t)) for n, a, t in _allison(10 ** 6, min_words=1)
               if min_s <= a.size / RATE <= max_s and normalize(spoken(t))]  # no silences, tones
    out += [Utterance("allison", n, a, t) for n, a, t in prompts[:allison]]
    for i, u in enumerate(out):
        u.noise = NOISES[i % len(NOISES)]
    return out, recordings


def framed(audio: np.ndarray, before_ms: int, after_ms: int) -> np.ndarray:
    """The utterance with silence either side, as the session hands a turn to the ASR."""
    return np.concatenate([np.zeros(RATE * before_ms // 1000, np.float32), audio,
                           np.zeros(RATE * after_ms // 1000, np.float32)])


def mixed(u: Utterance, index: int, speech: np.ndarray, recordings: list[np.ndarray], snr_db: float,
          seed: int) -> np.ndarray:
    """`speech` (u's audio, framed) with u's noise kind over all of it, at `snr_db` below u's
    active speech level."""
    rng = np.random.default_rng([seed, index])
    talkers = [r for r in recordings if r is not u.audio]  # never the utterance's own recording
    noise = make_noise(u.noise, speech.size, talkers, rng)
    return _fit(speech + at_snr(noise, _active_power(u.audio), snr_db))


class _CapCounter(logging.Handler):
    """Counts the engine's warnings that a decode stopped at its token cap."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.hits = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.hits += "cap" in record.getMessage()


CAPS = _CapCounter()


def _timed(engine: AsrEngine, audio: np.ndarray) -> tuple[str, float, float, bool]:
    hits = CAPS.hits
    wall, cpu = time.perf_counter(), time.process_time()
    text = engine.transcribe(audio, "en").text
    return text, time.perf_counter() - wall, time.process_time() - cpu, CAPS.hits > hits


def run_engine(name: str, engine: AsrEngine, inputs: list[tuple[Utterance, str, np.ndarray]]) -> list[Decode]:
    rows = []
    for u, condition, audio in tqdm(inputs, desc=f"[asr] {name}", unit="utt"):
        text, wall, cpu, capped = _timed(engine, audio)
        ref = normalize(u.text)
        rows.append(Decode(name, u.set, condition, u.name, u.noise, audio.size / RATE, wall, cpu,
                           edits(ref, normalize(text)), len(ref), text, u.text, capped))
    return rows


def streaming(engine: AsrEngine, clips: list[Utterance], step_ms: int, before_ms: int) -> dict[str, Any]:
    step = RATE * step_ms // 1000
    per_clip = []
    walls: list[float] = []
    capped: list[dict[str, Any]] = []
    for u in tqdm(clips, desc="[asr] streaming re-decodes", unit="clip"):
        cpu_total = 0.0
        audio = framed(u.audio, before_ms, 0)  # a partial ends where the user is, mid-speech
        ends = range(step, audio.size + 1, step)
        for end in ends:
            text, wall, cpu, cap = _timed(engine, audio[:end])
            walls.append(wall)
            cpu_total += cpu
            if cap:
                capped.append({"name": u.name, "prefix_s": end / RATE, "text": text})
        per_clip.append({"name": u.name, "audio_s": audio.size / RATE, "decodes": len(ends),
                         "cpu_s": cpu_total, "core_share": cpu_total / (audio.size / RATE)})
    talked = sum(c["audio_s"] for c in per_clip)
    return {"step_ms": step_ms, "clips": per_clip, "decodes": len(walls), "capped": capped,
            "p50_ms": 1000 * percentile(walls, 50), "p95_ms": 1000 * percentile(walls, 95),
            "core_share": sum(c["cpu_s"] for c in per_clip) / talked}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from voxserve.models.factory import build_asr

    utts, recordings = utterances(args.allison, args.min_seconds, args.max_seconds)
    print(f"[asr] {sum(u.set == 'librivox' for u in utts)} LibriVox clips, "
          f"{sum(u.set == 'allison' for u in utts)} voice-actor prompts; mixing noise at {args.snr} dB",
          flush=True)
    speech = [framed(u.audio, args.pad_before_ms, args.pad_after_ms) for u in utts]
    inputs = [(u, "clean", a) for u, a in zip(utts, speech, strict=True)]
    inputs += [(u, "noisy", mixed(u, i, a, recordings, args.snr, args.seed))
               for i, (u, a) in enumerate(zip(utts, speech, strict=True))]
    logging.getLogger("voxserve.models.moonshine_asr").addHandler(CAPS)
    rows: list[Decode] = []
    loads: dict[str, float] = {}
    stream: dict[str, Any] | None = None
    for name in args.engines.split(","):
        started = time.perf_counter()
        engine = build_asr(ENGINES[name])
        loads[name] = time.perf_counter() - started
        print(f"[asr] {name} loaded (and warmed up) in {loads[name]:.2f} s", flush=True)
        rows += run_engine(name, engine, inputs)
        if name == "moonshine-tiny-en" and args.step_ms:
            stream = streaming(engine, [u for u in utts if u.set == "librivox"], args.step_ms,
                               args.pad_before_ms)
        del engine
    return {"rows": [asdict(r) for r in rows], "loads": loads, "streaming": stream,
            "args": vars(args), "environment": environment(),
            "cpu_model": _cpu_model(), "moonshine_voice": _version("moonshine-voice"),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _wer(rows: list[dict[str, Any]]) -> str:
    words = sum(r["words"] for r in rows)
    return f"{100 * sum(r['edits'] for r in rows) / words:.1f}" if words else "-"


def markdown(report: dict[str, Any]) -> str:
    rows = report["rows"]
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    env, args = report["environment"], report["args"]

    def pick(**match: str) -> list[dict[str, Any]]:
        return [r for r in rows if all(r[k] == v for k, v in match.items())]

    first = engines[0]
    n = {s: len(pick(engine=first, set=s, condition="clean")) for s in SETS}
    words = {s: sum(r["words"] for r in pick(engine=first, set=s, condition="clean")) for s in SETS}
    lines = [
        "# ASR engines: Moonshine tiny-en and Whisper base", "",
        f"`python -m bench.asr --allison {args['allison']} --snr {args['snr']} --seed {args['seed']} "
        f"--pad-before-ms {args['pad_before_ms']} --pad-after-ms {args['pad_after_ms']}` "
        f"on {report['date']}: {env['cpus']} CPUs ({report['cpu_model']}, {env['platform']}), "
        f"onnxruntime {env['versions'].get('onnxruntime')}, faster-whisper "
        f"{env['versions'].get('faster-whisper')}, moonshine-voice {report['moonshine_voice']}. "
        "The box is shared, so times are ±30 %. How the sets and the noise are made and what "
        "each figure counts: the docstring of `bench/asr.py`.", "",
        f"Speech: {n['librivox']} LibriVox clips ({words['librivox']} words) and {n['allison']} "
        f"voice-actor prompts of {args['min_seconds']}-{args['max_seconds']} s ({words['allison']} "
        f"words), each with {args['pad_before_ms']} ms before and {args['pad_after_ms']} ms after; "
        f"noisy = {args['snr']} dB SNR, babble, fan and clicks in turn. One word is "
        f"{100 / max(words['librivox'], 1):.1f} points of WER on LibriVox and "
        f"{100 / max(words['allison'], 1):.2f} on the prompts.", "",
        "## WER (%)", "",
        "| engine | LibriVox clean | LibriVox noisy | prompts clean | prompts noisy | all clean | all noisy |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in engines:
        cells = [_wer(pick(engine=e, set=s, condition=c)) for s in SETS for c in CONDITIONS]
        cells += [_wer(pick(engine=e, condition=c)) for c in CONDITIONS]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    lines += ["", "Noisy WER by noise kind, both sets together (%; each kind is a third of the "
              "utterances):", "", "| engine | " + " | ".join(NOISES) + " |",
              "|---|" + "---|" * len(NOISES)]
    for e in engines:
        lines.append(f"| {e} | " + " | ".join(_wer(pick(engine=e, condition="noisy", noise=k))
                                            for k in NOISES) + " |")
    lines += ["", "## Decode time per utterance", "",
              "Wall time of one `transcribe` call; per second of audio: total time over total "
              "audio; CPU: all threads of the process.", "",
              "| engine | set | condition | p50 ms | p95 ms | wall ms per s of audio | "
              "CPU ms per s of audio | load s |", "|---|---|---|---|---|---|---|---|"]
    for e in engines:
        for s in SETS:
            for c in CONDITIONS:
                rs = pick(engine=e, set=s, condition=c)
                if not rs:
                    continue
                walls = [r["wall_s"] for r in rs]
                audio = sum(r["audio_s"] for r in rs)
                lines.append(
                    f"| {e} | {s} | {c} | {1000 * percentile(walls, 50):.0f} | "
                    f"{1000 * percentile(walls, 95):.0f} | {1000 * sum(walls) / audio:.0f} | "
                    f"{1000 * sum(r['cpu_s'] for r in rs) / audio:.0f} | {report['loads'][e]:.2f} |")
    st = report["streaming"]
    if st:
        lines += ["", f"## Streaming partials with Moonshine: re-decoding the turn every "
                  f"{st['step_ms']} ms", "",
                  f"{st['decodes']} re-decodes of growing prefixes of the LibriVox clips: "
                  f"p50 {st['p50_ms']:.0f} ms, p95 {st['p95_ms']:.0f} ms each. Over a whole "
                  f"clip they cost **{100 * st['core_share']:.0f} % of one core** while the user "
                  "talks (CPU time of all re-decodes over the audio's duration; it grows with "
                  "the turn's length, as each re-decode covers the whole turn so far).", "",
                  "| clip | audio s | re-decodes | CPU s | share of a core |", "|---|---|---|---|---|"]
        for c in st["clips"]:
            lines.append(f"| {c['name']} | {c['audio_s']:.1f} | {c['decodes']} | {c['cpu_s']:.2f} | "
                         f"{100 * c['core_share']:.0f} % |")
        if st["capped"]:
            lines += ["", f"{len(st['capped'])} re-decodes stopped at the token cap (clip, "
                      "prefix, what it decoded):", ""]
            lines += [f"- {c['name']} at {c['prefix_s']:.2f} s: \"{c['text']}\"" for c in st["capped"]]
    capped = [r for r in rows if r["capped"]]
    lines += ["", f"Whole-utterance decodes that stopped at Moonshine's token cap: {len(capped)}"
              + "".join(f"; {r['set']} {r['condition']} {r['name']}: \"{r['text']}\"" for r in capped) + "."]
    if {"moonshine-tiny-en", "whisper-base"} <= set(engines) and args["examples"]:
        lines += ["", "## Where the engines differ most (clean)", "",
                  "| utterance | reference | moonshine-tiny-en | whisper-base |", "|---|---|---|---|"]
        clean = {(r["engine"], r["set"], r["name"]): r for r in pick(condition="clean")}
        keys = [(r["set"], r["name"]) for r in pick(engine=first, condition="clean")]
        keys.sort(key=lambda k: -abs(clean[("moonshine-tiny-en", *k)]["edits"]
                                     - clean[("whisper-base", *k)]["edits"]))
        for k in keys[:args["examples"]]:
            m, w = clean[("moonshine-tiny-en", *k)], clean[("whisper-base", *k)]
            lines.append(f"| {k[1]} | {m['reference']} | {m['text']} ({m['edits']} edits) | "
                         f"{w['text']} ({w['edits']} edits) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/perf/asr-report.md")
    ap.add_argument("--json", help="also write every decode here as JSON")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma list of {', '.join(ENGINES)}")
    ap.add_argument("--allison", type=int, default=80, help="voice-actor prompts (0: LibriVox only)")
    ap.add_argument("--min-seconds", type=float, default=1.5)
    ap.add_argument("--max-seconds", type=float, default=15.0,
                    help="longer prompts are left out: a voice turn is rarely that long")
    ap.add_argument("--snr", type=float, default=10.0, help="dB, for the noisy condition")
    ap.add_argument("--pad-before-ms", type=int, default=300,
                    help="silence (or noise) before each utterance: the session's prefix padding")
    ap.add_argument("--pad-after-ms", type=int, default=200,
                    help="and after it: the pause at which the session starts the decode")
    ap.add_argument("--step-ms", type=int, default=250, help="streaming re-decode interval (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", type=int, default=8, help="rows in the differences table")
    ap.add_argument("--render", help="only write the markdown for this --json file")
    args = ap.parse_args(argv)
    if args.render:
        report = json.loads(Path(args.render).read_text())
    else:
        unknown = set(args.engines.split(",")) - set(ENGINES)
        if unknown:
            ap.error(f"unknown engines {', '.join(sorted(unknown))}")
        started = time.perf_counter()
        report = run(args)
        report["wall_s"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(f"[asr] wrote {args.out}" + (f" in {report['wall_s']:.0f} s" if "wall_s" in report else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
