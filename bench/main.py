"""`voxserve bench`: the time-to-first-audio load benchmark.

    voxserve bench --sessions 4 --turns 3                      # fixed load against --url
    voxserve bench --ramp 1,2,4,8 --slo-ttfa-p95-ms 2000       # step ramp to the saturation point
    voxserve bench --poisson-rate 0.2 --duration 120           # Poisson session arrivals
    voxserve bench --compare a.yaml b.yaml --sessions 2        # two configs, same seed and clips
    voxserve bench --echo 10,40,100                            # the WebSocket path alone

Writes report.json, report.md and PNG plots to --out. Exits 1 when --slo-ttfa-p95-ms is given
and the TTFA p95 (at the highest level run) is over it, 2 on bad arguments. Traffic goes only to
--url (loopback by default) or to servers this command starts on loopback (--compare).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import websockets

from voxserve.audio.formats import b64encode
from voxserve.bench.load import Clip, LoadSpec, TurnRecord, make_clip, run_session
from voxserve.bench.report import environment, pct, percentile, summarise, write
from voxserve.bench.server import LocalServer
from voxserve.bench.ttfa_single import server_memory
from voxserve.client import event_text, read_wav
from voxserve.protocol.client_events import InputAudioBufferAppendEvent

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CLIPS = sorted((REPO / "tests" / "data").glob("*.wav"))


def _progress(total: int, label: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="turn", file=sys.stderr, dynamic_ncols=True)


async def _level(spec: LoadSpec, clips: list[Clip], sessions: int, deadline: float,
                 arrivals: list[float] | None = None) -> list[TurnRecord]:
    """`sessions` conversations at once (or at the given arrival offsets)."""
    records: list[TurnRecord] = []
    bar = _progress(sessions * spec.turns, f"{spec.config} x{sessions}")
    jitter = random.Random(spec.seed)

    async def one(i: int) -> None:
        # stagger starts a little so sessions do not all speak in lockstep
        await asyncio.sleep(arrivals[i] if arrivals else jitter.uniform(0, 1.0))
        await run_session(spec, clips, sessions, i, records, deadline, on_turn=lambda: bar.update())

    try:
        await asyncio.gather(*(one(i) for i in range(sessions)))
    finally:
        bar.close()
    return records


def _p95(records: list[TurnRecord]) -> float | None:
    values = [r.ttfa_ms for r in records if r.ttfa_ms is not None]
    return float(pct(values)["p95"]) if values else None


def _what_saturates(records: list[TurnRecord]) -> str:
    """The server stage whose p50 grew most from the first level (a hint, not a proof)."""
    stages = ("asr_ms", "llm_first_token_ms", "tts_first_chunk_ms", "end_of_turn_ms")
    by_level: dict[int, dict[str, float]] = {}
    for lv in sorted({r.level for r in records}):
        rs = [r.server for r in records if r.level == lv and r.server]
        by_level[lv] = {s: percentile([x[s] for x in rs if x.get(s) is not None], 50)
                        for s in stages if any(x.get(s) is not None for x in rs)}
    levels = sorted(by_level)
    if len(levels) < 2:
        return "unknown (one level)"
    first, last = by_level[levels[0]], by_level[levels[-1]]
    growth = {s: last[s] - first[s] for s in stages if s in first and s in last}
    if not growth:
        return "unknown"
    top = max(growth, key=lambda k: growth[k])
    return f"{top[:-3]} p50 grew {growth[top]:.0f} ms"


async def run_load(spec: LoadSpec, clips: list[Clip], args: argparse.Namespace) -> tuple[list[TurnRecord], dict[str, Any] | None]:
    deadline = time.monotonic() + args.max_seconds
    if args.ramp:
        records: list[TurnRecord] = []
        last_ok, breach = None, None
        for level in args.ramp:
            recs = await _level(spec, clips, level, deadline)
            records += recs
            p95 = _p95(recs)
            if p95 is not None and p95 <= args.slo_ttfa_p95_ms:
                last_ok = level
            else:
                breach = level
                break
            if time.monotonic() > deadline:
                break
        sat = None if breach is None else {"last_ok": last_ok, "first_breach": breach,
                                           "what": _what_saturates(records)}
        return records, sat
    if args.poisson_rate:
        rng = random.Random(spec.seed)
        arrivals: list[float] = []
        t = 0.0
        while t < args.duration and len(arrivals) < args.max_sessions:
            arrivals.append(t)
            t += rng.expovariate(args.poisson_rate)
        return await _level(spec, clips, len(arrivals), deadline, arrivals), None
    return await _level(spec, clips, args.sessions, deadline), None


async def echo_level(url: str, api_key: str | None, sessions: int, seconds: float) -> list[float]:
    """Per-frame RTT through the ingress: each session sends 20 ms PCM frames (as JSON, as the
    protocol would) every 20 ms and times each echo."""
    frame = event_text(InputAudioBufferAppendEvent(type="input_audio_buffer.append",
                                                   audio=b64encode(bytes(960))))
    rtts: list[float] = []
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def one(i: int) -> None:
        async with websockets.connect(url, additional_headers=headers, open_timeout=60) as ws:
            await asyncio.sleep(i * 0.02 / max(1, sessions))  # spread the frames
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                t0 = time.perf_counter()
                await ws.send(frame)
                await ws.recv()
                rtts.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(max(0.0, 0.02 - (time.perf_counter() - t0)))

    await asyncio.gather(*(one(i) for i in range(sessions)))
    return rtts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="voxserve bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime")
    p.add_argument("--api-key", default=os.environ.get("VOXSERVE_API_KEY"))
    p.add_argument("--sessions", type=int, default=2)
    p.add_argument("--turns", type=int, default=3, help="turns per session")
    p.add_argument("--think", type=float, default=1.0, help="mean think time between turns (s)")
    p.add_argument("--barge-share", type=float, default=0.0, help="share of turns interrupted")
    p.add_argument("--tool-share", type=float, default=0.0, help="share of turns that call a tool")
    p.add_argument("--ramp", type=lambda s: [int(x) for x in s.split(",")],
                   help="step ramp of session counts, e.g. 1,2,4,8 (stops when the SLO breaks)")
    p.add_argument("--poisson-rate", type=float, help="session arrivals per second")
    p.add_argument("--duration", type=float, default=60.0, help="arrival window for --poisson-rate")
    p.add_argument("--max-sessions", type=int, default=64)
    p.add_argument("--compare", nargs=2, metavar="OPTIONS_YAML",
                   help="start a server with each options file in turn and run the same load")
    p.add_argument("--echo", type=lambda s: [int(x) for x in s.split(",")],
                   help="gateway mode: per-frame RTT at these session counts (no models)")
    p.add_argument("--echo-seconds", type=float, default=5.0)
    p.add_argument("--floors", action="store_true",
                   help="also time each stage alone in this process (needs the CPU models)")
    p.add_argument("--clips", nargs="*", default=[str(c) for c in DEFAULT_CLIPS])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--turn-detection", choices=("server_vad", "semantic_vad"), default="server_vad",
                   help="the sessions' turn detection (server_vad: 500 ms of silence)")
    p.add_argument("--slo-ttfa-p95-ms", type=float, default=None)
    p.add_argument("--max-seconds", type=float, default=900.0, help="hard limit on the whole run")
    p.add_argument("--out", default="bench/results/latest")
    args = p.parse_args(argv)
    if args.ramp and args.slo_ttfa_p95_ms is None:
        args.slo_ttfa_p95_ms = 2000.0
    for share in (args.barge_share, args.tool_share):
        if not 0 <= share <= 1:
            p.error("shares must be between 0 and 1")
    if args.sessions < 1 or args.turns < 1 or args.max_seconds <= 0:
        p.error("--sessions, --turns and --max-seconds must be positive")
    return args


def server_stats(url: str, api_key: str | None) -> dict[str, Any] | None:
    """The server's /stats (None when it does not answer: an older server, or not ours)."""
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    request = urllib.request.Request(f"{scheme}://{parts.netloc}/stats", headers=(
        {"Authorization": f"Bearer {api_key}"} if api_key else {}))
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def server_report(url: str, api_key: str | None, before: dict[str, Any] | None) -> dict[str, Any]:
    """What the run cost the server: speculative answers by outcome (counts and LLM seconds,
    this run's share of the ingress's counters) and, when it runs on this machine, the memory
    of each of its processes."""
    after = server_stats(url, api_key) or {}
    out: dict[str, Any] = {}
    for key in ("speculations", "speculation_seconds"):
        was = (before or {}).get(key, {})
        out[key] = {k: round(v - was.get(k, 0), 3) for k, v in after.get(key, {}).items()}
    if urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1"):
        out["memory"] = server_memory()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clips = [make_clip(Path(c).stem, read_wav(c)) for c in args.clips]
    shape = (f"ramp {args.ramp}" if args.ramp else
             f"poisson {args.poisson_rate}/s over {args.duration:.0f} s" if args.poisson_rate else
             f"fixed {args.sessions} sessions")
    shape += f", {args.turns} turns each, think {args.think} s, barge-in share " \
             f"{args.barge_share}, tool share {args.tool_share}, {args.turn_detection}"
    report: dict[str, Any] = {"shape": shape, "seed": args.seed, "clips": [c.name for c in clips],
                              "slo_ttfa_p95_ms": args.slo_ttfa_p95_ms, "turns": [],
                              "environment": environment()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = [(Path(c).stem, c) for c in args.compare] if args.compare else [("default", None)]
    records: list[TurnRecord] = []
    for label, config in targets:
        server = LocalServer(out / f"server-{label}.log", config) if config else None
        url = server.url if server else args.url
        try:
            if args.echo:
                parts = urlsplit(url)
                echo_url = f"{parts.scheme}://{parts.netloc}/voxserve/echo"
                report.setdefault("echo", [])
                for n in args.echo:
                    rtts = asyncio.run(echo_level(echo_url, args.api_key, n, args.echo_seconds))
                    report["echo"].append({"config": label, "sessions": n, "rtt_ms": pct(rtts)})
                    print(f"echo {label} x{n}: {pct(rtts)}", file=sys.stderr)
                continue
            spec = LoadSpec(url=url, config=label, api_key=args.api_key, turns=args.turns,
                            think_s=args.think, barge_share=args.barge_share,
                            tool_share=args.tool_share, seed=args.seed,
                            turn_detection=args.turn_detection)
            before = server_stats(url, args.api_key)
            recs, saturation = asyncio.run(run_load(spec, clips, args))
            records += recs
            report.setdefault("server", {})[label] = server_report(url, args.api_key, before)
            if args.ramp:
                report.setdefault("saturation", {})[label] = saturation
        finally:
            if server is not None:
                server.stop()
    report["turns"] = [r.row() for r in records]
    report["summary"] = summarise(report["turns"])
    if args.floors and records:
        from voxserve.bench.ttfa_single import stage_floors

        transcript = "He was not an ill disposed young man."
        floors = stage_floors(clips[0].audio, transcript, 3, None)
        sum_p50 = sum(percentile(v, 50) for v in floors.values())
        lowest = report["summary"]["levels"][0]["ttfa_ms"]
        report["floors"] = {"stages": {k: pct(v) for k, v in floors.items()}, "sum_p50_ms": sum_p50,
                            "ttfa_over_floors": round(lowest["p50"] / sum_p50, 2) if lowest.get("n") else None}
    code = 0
    if args.slo_ttfa_p95_ms is not None and records:
        top = max(report["summary"]["levels"], key=lambda lv: lv["sessions"])
        measured = top["ttfa_ms"].get("p95")
        ok = measured is not None and measured <= args.slo_ttfa_p95_ms
        report["slo"] = {"limit_ms": args.slo_ttfa_p95_ms, "measured_ms": measured, "ok": ok}
        code = 0 if ok else 1
    if records or report.get("echo"):
        write(report, out)
        print((out / "report.md").read_text())
        print(f"report: {out / 'report.json'}", file=sys.stderr)
    else:
        print("no turns were measured", file=sys.stderr)
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
