"""Noise suppression benchmark: WER, VAD false starts and cost for each engine setting.

    .venv/bin/python -m bench.noise [--out docs/perf/noise-report.md] [--clips 5] [--realizations 2]

Recorded speech (the LibriVox clips in `tests/data`, public domain, with transcripts) mixed with
three kinds of noise at 0, 5 and 10 dB SNR, then run through each engine of
`voxserve.audio.denoise` (and through none), streamed in 20 ms pieces as a session would:

- babble: the other recordings summed (the other LibriVox sentences and the es-MX prompts in
  `tests/data/es`, each at the same level, looped from random offsets);
- fan: pink noise (seeded) with a slow swell and a blade hum at 90 Hz and its harmonics;
- clicks: keyboard-like transients (seeded): a press and a softer release, each a few ms of
  decaying, high-passed noise, ~7 keys a second at random levels.

SNR is the speech's active level (its 20 ms frames within 35 dB of the loudest) over the noise's
mean power, so at 0 dB a single click peaks far above the speech. Each mix has 1 s of noise before
the speech (an adaptive suppressor has heard the room before the user talks, as in a session) and
0.5 s after.

Measured, per engine setting:
- WER with Whisper base (`FasterWhisperEngine`, one thread, English; `--asr moonshine`: Moonshine
  tiny-en, which English turns use by default) on the speech span plus
  300 ms either side (the session's prefix padding), aligned for the engine's delay;
- speech missed: mixes where the session's VAD (`TurnDetector` over Silero, the session's
  defaults) is never in a turn during the speech;
- VAD false starts: turns started on 20 s of noise alone at each level (a fresh denoiser each),
  and the share of that time spent inside a turn (a start on babble tends to last: the turn only
  ends after 500 ms without speech);
- cost: CPU seconds the denoiser reports (`cost_s`, thread time) per 10 ms of audio, and the
  sessions one core could carry at that cost.
Babble is speech: a VAD that starts on loud babble is doing its job, so those false starts are
for comparing the suppressors, not a target of zero.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxserve.audio.denoise import ENGINES, PRESETS, Denoiser, make_engine
from voxserve.bench.report import environment
from voxserve.bench.wer import edits, normalize
from voxserve.client import read_wav
from voxserve.config import VadOptions
from voxserve.protocol.session_config import TurnDetection
from voxserve.session.turn_detector import SpeechStart, TurnDetector

RATE = 16_000
CHUNK = 320  # 20 ms pieces, as a client streams
LEAD_S, TAIL_S, PAD_S = 1.0, 0.5, 0.3
NOISE_ONLY_S = 20.0
SNRS = (10, 5, 0)
NOISES = ("babble", "fan", "clicks")
DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
DEFAULT_VARIANTS = ("none", "webrtc-ns-1", "webrtc-ns-2", "webrtc-ns-3", "dtln", "dtln-wet50",
                    "deepfilternet3", "deepfilternet3-12db")


@dataclass
class Clip:
    name: str
    audio: np.ndarray
    text: str


def _active_power(x: np.ndarray) -> float:
    frames = x[: x.size - x.size % 320].reshape(-1, 320)
    power = (frames.astype(np.float64) ** 2).mean(axis=1)
    return float(power[power > power.max() * 10 ** -3.5].mean())


def _loop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    reps = np.tile(x, n // x.size + 2)
    start = int(rng.integers(0, x.size))
    return reps[start:start + n]


def babble(n: int, talkers: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    for t in talkers:
        out += _loop(t / np.sqrt(_active_power(t)), n, rng)
    return out


def fan(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec[1:] /= np.sqrt(np.maximum(f[1:], 20.0))  # 1/f power: pink
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    x /= x.std()
    t = np.arange(n) / RATE
    hum = sum(np.sin(2 * np.pi * 90 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3))
    swell = 1 + 0.15 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 2 * np.pi))
    return swell * (x + 0.25 * hum)


def clicks(n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    at = 0.0
    while True:
        at += rng.exponential(RATE / 7)
        if at >= n:
            break
        level = rng.lognormal(0.0, 0.5)
        for start, amp in ((int(at), level), (int(at + rng.uniform(0.06, 0.12) * RATE), 0.5 * level)):
            length = int(rng.uniform(0.004, 0.012) * RATE)
            burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 4))
            burst = np.diff(burst, prepend=0.0)  # high-passed: the bright tick of a plastic key
            end = min(n, start + length)
            if end > start:  # a key released after the end of the noise is not heard
                out[start:end] += amp * burst[:end - start]
    return out


def make_noise(kind: str, n: int, talkers: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    if kind == "babble":
        return babble(n, talkers, rng)
    return fan(n, rng) if kind == "fan" else clicks(n, rng)


def at_snr(noise: np.ndarray, speech_power: float, snr_db: float) -> np.ndarray:
    return noise * np.sqrt(speech_power / 10 ** (snr_db / 10) / float((noise ** 2).mean()))


def _fit(x: np.ndarray) -> np.ndarray:
    """Scale down (never up) so the mix does not clip; the SNR is unchanged."""
    peak = float(np.abs(x).max())
    return (x / peak * 0.99 if peak > 0.99 else x).astype(np.float32)


def stream(denoiser: Denoiser | None, x: np.ndarray) -> np.ndarray:
    """The signal as the session's VAD and ASR would see it, the engine's delay removed."""
    if denoiser is None:
        return x
    out = np.concatenate([denoiser.process(x[i:i + CHUNK]) for i in range(0, x.size, CHUNK)]
                         + [denoiser.process(np.zeros(denoiser.delay_samples, np.float32))])
    return out[denoiser.delay_samples:]


def vad_run(x: np.ndarray, vad: Callable[[], Any]) -> tuple[list[int], np.ndarray]:
    """The session's turn detector over `x`: where turns started, and whether a turn was under
    way after each 20 ms piece."""
    detector = TurnDetector(vad(), TurnDetection(), VadOptions().min_speech_ms)
    detector.reset(0)
    starts: list[int] = []
    speaking = np.zeros((x.size + CHUNK - 1) // CHUNK, bool)
    for j, i in enumerate(range(0, x.size, CHUNK)):
        starts += [e.sample for e in detector.feed(x[i:i + CHUNK]) if isinstance(e, SpeechStart)]
        speaking[j] = detector.speaking
    return starts, speaking


def load_clips(limit: int) -> tuple[list[Clip], list[np.ndarray]]:
    clips = [Clip(p.stem[-4:], read_wav(p, RATE), p.with_suffix(".txt").read_text().strip())
             for p in sorted(DATA.glob("*.wav"))]
    spanish = [read_wav(p, RATE) for p in sorted((DATA / "es").glob("*.wav"))]
    return clips[:limit], [c.audio for c in clips] + spanish


def _asr(name: str) -> Any:
    if name == "moonshine":
        from voxserve.models.moonshine_asr import MoonshineEngine
        return MoonshineEngine(cpu_threads=1)
    from voxserve.models.whisper_asr import FasterWhisperEngine
    return FasterWhisperEngine(cpu_threads=1)


def run(variants: list[str], n_clips: int, realizations: int, seed: int,
        asr_name: str = "whisper") -> dict[str, Any]:
    from voxserve.models.silero_vad import SileroVad

    asr = _asr(asr_name)
    vad = SileroVad.shared()
    clips, recordings = load_clips(n_clips)
    speech_power = float(np.mean([_active_power(c.audio) for c in clips]))
    conditions: list[tuple[str, int | None]] = [("clean", None)] + [(k, s) for k in NOISES for s in SNRS]

    # Every variant hears the same mixes: built once, seeded per (clip, noise, realization).
    mixes: dict[tuple[str, int | None], list[tuple[Clip, np.ndarray]]] = {}
    for kind, snr in conditions:
        rows = []
        for ci, clip in enumerate(clips):
            lead, tail = int(LEAD_S * RATE), int(TAIL_S * RATE)
            speech = np.concatenate([np.zeros(lead), clip.audio, np.zeros(tail)])
            for r in range(realizations if snr is not None else 1):
                if snr is None:
                    rows.append((clip, speech.astype(np.float32)))
                    continue
                rng = np.random.default_rng([seed, ci, NOISES.index(kind), r])
                talkers = [t for t in recordings if t is not clip.audio]
                noise = make_noise(kind, speech.size, talkers, rng)
                rows.append((clip, _fit(speech + at_snr(noise, speech_power, snr))))
        mixes[(kind, snr)] = rows
    noise_only = {}
    for kind in NOISES:
        rng = np.random.default_rng([seed, 99, NOISES.index(kind)])
        base = make_noise(kind, int(NOISE_ONLY_S * RATE), recordings, rng)
        for snr in SNRS:
            noise_only[(kind, snr)] = _fit(at_snr(base, speech_power, snr))

    results: dict[str, Any] = {}
    for variant in variants:
        res: dict[str, Any] = {"wer": {}, "missed": {}, "false_starts": {}, "false_turn_share": {}, "cost_s": 0.0, "audio_s": 0.0}
        t_load = time.perf_counter()
        probe = None if variant == "none" else make_engine(variant)
        res["load_s"] = round(time.perf_counter() - t_load, 3)
        res["delay_ms"] = 0.0 if probe is None else probe.delay_samples / RATE * 1000
        for kind, snr in conditions:
            t0 = time.perf_counter()
            errors = words = missed = 0
            for clip, mix in mixes[(kind, snr)]:
                den = None if variant == "none" else make_engine(variant)
                heard = stream(den, mix)
                if den is not None:
                    res["cost_s"] += den.cost_s
                    res["audio_s"] += mix.size / RATE
                a = int((LEAD_S - PAD_S) * RATE)
                b = int((LEAD_S + clip.audio.size / RATE + PAD_S) * RATE)
                text = asr.transcribe(heard[a:b], language="en").text
                ref = normalize(clip.text)
                errors += edits(ref, normalize(text))
                words += len(ref)
                _, speaking = vad_run(heard, vad)
                lo, hi = int(LEAD_S * RATE) // CHUNK, (int(LEAD_S * RATE) + clip.audio.size) // CHUNK
                missed += not speaking[lo:hi].any()
            key = kind if snr is None else f"{kind} {snr} dB"
            res["wer"][key] = errors / words
            res["missed"][key] = [missed, len(mixes[(kind, snr)])]
            print(f"[noise] {variant:>15} {key:>13}: WER {100 * errors / words:5.1f} % "
                  f"({errors}/{words} words), speech missed {missed}/{len(mixes[(kind, snr)])} "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
        for (kind, snr), noise in noise_only.items():
            den = None if variant == "none" else make_engine(variant)
            starts, speaking = vad_run(stream(den, noise), vad)
            if den is not None:
                res["cost_s"] += den.cost_s
                res["audio_s"] += noise.size / RATE
            res["false_starts"][f"{kind} {snr} dB"] = len(starts)
            res["false_turn_share"][f"{kind} {snr} dB"] = float(speaking.mean())
            print(f"[noise] {variant:>15} {kind} {snr} dB noise only: {len(starts)} false starts "
                  f"in {NOISE_ONLY_S:.0f} s, in a turn {100 * speaking.mean():.0f} % of the time", flush=True)
        if res["audio_s"]:
            res["us_per_10ms"] = res["cost_s"] / (res["audio_s"] * 100) * 1e6
        results[variant] = res
    return {"variants": results, "clips": [c.name for c in clips], "words": sum(len(normalize(c.text))
            for c in clips), "realizations": realizations, "seed": seed, "presets": dict(PRESETS), "asr": asr_name,
            "environment": environment()}


def _presets_of(variant: str, presets: dict[str, str]) -> str:
    names = [p for p, v in presets.items() if v == variant]
    return f" ({', '.join(names)})" if names else ""


def markdown(report: dict[str, Any]) -> str:
    v = report["variants"]
    presets = report["presets"]
    keys = ["clean"] + [f"{k} {s} dB" for k in NOISES for s in SNRS]
    noisy = keys[1:]
    env = report["environment"]
    asr = {"whisper": "Whisper base", "moonshine": "Moonshine tiny-en"}[report.get("asr", "whisper")]
    lines = [
        "# Noise suppression: WER, VAD false starts and cost per engine setting", "",
        f"`python -m bench.noise` on {env['cpus']} CPUs ({env['platform']}). Speech: "
        f"{len(report['clips'])} LibriVox clips ({report['words']} words; {', '.join(report['clips'])}), "
        f"each mixed with {report['realizations']} noise realizations per condition (seed "
        f"{report['seed']}), so each noisy cell is {report['words'] * report['realizations']} "
        "words: one word is "
        f"{100 / (report['words'] * report['realizations']):.1f} points. How the noise is made, "
        "how SNR is defined and what each column counts: the docstring of `bench/noise.py`.", "",
        "Read with care: the babble is made of other recordings, including other sentences by "
        "the same LibriVox reader, so at 0-5 dB it is intelligible competing speech that no "
        "suppressor can remove (they are trained to keep speech); Silero correctly calls it "
        "speech, which is why babble opens a turn and holds it. Stationary fan noise and clicks "
        f"never opened a turn, with or without suppression, at any of these levels. Transcribed by "
        f"{asr}. A suppressor's artefacts can cost words as well as save them: compare each row "
        "with `none`.", "",
        "Presets (`voxserve.audio.denoise.PRESETS`): "
        + ", ".join(f"`{p}` -> `{e}`" for p, e in presets.items()) + ".", "",
        f"## WER (%), {asr}", "",
        "| engine | " + " | ".join(keys) + " | mean noisy |",
        "|---|" + "---|" * (len(keys) + 1),
    ]
    for name, r in v.items():
        mean = np.mean([r["wer"][k] for k in noisy])
        lines.append(f"| {name}{_presets_of(name, presets)} | "
                     + " | ".join(f"{100 * r['wer'][k]:.1f}" for k in keys) + f" | {100 * mean:.1f} |")
    lines += ["", "Mean over the three noises, by SNR (%):", "",
              "| engine | clean | 10 dB | 5 dB | 0 dB |", "|---|---|---|---|---|"]
    for name, r in v.items():
        by_snr = [np.mean([r["wer"][f"{k} {s} dB"] for k in NOISES]) for s in SNRS]
        lines.append(f"| {name} | {100 * r['wer']['clean']:.1f} | "
                     + " | ".join(f"{100 * m:.1f}" for m in by_snr) + " |")
    lines += ["", "## Speech missed by the VAD (mixes where no turn is under way at any point of the speech)", "",
              "| engine | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, r in v.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['missed'][k][0]}/{r['missed'][k][1]}" for k in keys)
                     + " |")
    fs_keys = [f"{k} {s} dB" for k in NOISES for s in SNRS]
    lines += ["", f"## VAD false starts on {NOISE_ONLY_S:.0f} s of noise alone "
              "(Silero, threshold 0.5, 100 ms minimum speech)", "",
              "| engine | " + " | ".join(fs_keys) + " | total |", "|---|" + "---|" * (len(fs_keys) + 1)]
    for name, r in v.items():
        lines.append(f"| {name} | " + " | ".join(str(r["false_starts"][k]) for k in fs_keys)
                     + f" | {sum(r['false_starts'].values())} |")
    lines += ["", "## Share of the noise-only time spent inside a (false) turn (%)", "",
              "| engine | " + " | ".join(fs_keys) + " |", "|---|" + "---|" * len(fs_keys)]
    for name, r in v.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * r['false_turn_share'][k]:.0f}" for k in fs_keys)
                     + " |")
    lines += ["", "## Cost (CPU thread time inside `process`, one thread)", "",
              "| engine | µs per 10 ms frame | % of a core | sessions per core | delay (ms) | load (s) |",
              "|---|---|---|---|---|---|"]
    for name, r in v.items():
        if name == "none":
            continue
        us = r["us_per_10ms"]
        lines.append(f"| {name} | {us:.0f} | {us / 100:.1f} | {10_000 / us:.0f} | {r['delay_ms']:.0f} | "
                     f"{r['load_s']:.2f} |")
    clean = v["none"]["wer"]["clean"] if "none" in v else None
    deep = presets["azure_deep_noise_suppression"]
    if clean is not None and deep in v:
        lines += ["", f"## Goal: the deep preset (`{deep}`) at 5 dB within 1.5x of the clean WER "
                  f"({100 * clean:.1f} %, no suppression)", ""]
        for kind in NOISES:
            w = v[deep]["wer"][f"{kind} 5 dB"]
            ok = "met" if w <= 1.5 * clean else "not met"
            lines.append(f"- {kind}: {100 * w:.1f} % ({ok}; without suppression "
                         f"{100 * v['none']['wer'][f'{kind} 5 dB'] if 'none' in v else float('nan'):.1f} %)")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/perf/noise-report.md")
    parser.add_argument("--json", help="also write the figures here as JSON")
    parser.add_argument("--clips", type=int, default=5, help="how many LibriVox clips (at most 5)")
    parser.add_argument("--realizations", type=int, default=2, help="noise draws per clip and condition")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma list of 'none' and engines: {', '.join(ENGINES)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--asr", choices=("whisper", "moonshine"), default="whisper",
                        help="the engine that transcribes the mixes: whisper (base, as the presets "
                             "were chosen) or moonshine (what English turns use by default)")
    parser.add_argument("--render", help="only write the markdown for this --json file")
    parser.add_argument("--reuse", help="a --json file of an earlier run on the same clips, draws and "
                        "seed: its variants are kept and only the others are measured")
    args = parser.parse_args()
    if args.render:
        report = json.loads(Path(args.render).read_text())
        report["presets"] = dict(PRESETS)  # the mapping as it is now, chosen from these figures
        Path(args.out).write_text(markdown(report))
        return
    t0 = time.perf_counter()
    wanted = args.variants.split(",")
    earlier: dict[str, Any] = {}
    if args.reuse:
        old = json.loads(Path(args.reuse).read_text())
        if ((old["seed"], old["realizations"], len(old["clips"]), old.get("asr", "whisper"))
                != (args.seed, args.realizations, args.clips, args.asr)):
            parser.error(f"{args.reuse} was measured on other clips, draws, seed or ASR")
        earlier = {k: v for k, v in old["variants"].items() if k in wanted}
    report = run([v for v in wanted if v not in earlier], args.clips, args.realizations, args.seed,
                 args.asr)
    report["variants"] = {v: earlier.get(v) or report["variants"][v] for v in wanted}
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(f"[noise] wrote {args.out} in {report['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
