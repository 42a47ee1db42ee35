"""Soak benchmark: continuous conversations at a steady load, watching every process for leaks.

    .venv/bin/python -m bench.soak                                  # 2 sessions, 30 minutes
    .venv/bin/python -m bench.soak --duration 300 --out docs/perf   # a 5-minute run
    .venv/bin/python -m bench.soak --url ws://127.0.0.1:8000/v1/realtime --api-key KEY

Without `--url` it starts `voxserve serve` on a free loopback port with bench/configs/soak.yaml
(the CPU default, with llama.cpp's RAM prompt cache capped low so that it is full within the
warm-up: at the default 512 MiB it grows for most of a 30-minute run, which is a cache filling to
its cap, not a leak, and would hide one). `--sessions` conversations run at once (the default 2
is ~70 % of where this turn mix saturates the box: at 3, TTFA p50 was 7 s and turns timed out;
short turns saturate at 4, docs/perf/ramp-report.md), each a loop of turns of the load client (`bench/load.py`):
recorded speech streamed in real time; a share of barge-ins, where a clip is spoken over a long
answer once its first audio arrives; and a share of tool turns, where `response.create` asks for
`tool_choice: required`, the client answers the call with `function_call_output` and asks for
the spoken answer. Turn kinds follow a golden-ratio sequence, so the shares hold over any few
turns rather than by chance. Each conversation reconnects every `--reconnect-every` turns, so
opening and closing sessions is soaked too.

Every `--sample-every` seconds it reads `/stats` (the ingress's and each replica's own process:
RSS, descriptors, asyncio tasks, threads), its own process, and, when the server is on this host,
Ray's processes (raylet, GCS, Serve's proxy and controller, agents, the `serve` driver) from
`/proc`; one progress line per sample. The first sample is taken before any session opens and the
last after every session closed, so their difference is what the run left behind.

Writes soak.json (samples, turns, analysis), soak-samples.csv, soak-report.md and
soak-memory.png to --out. Exits 1 on an unexpected error or a process over a limit
(`--max-slope-mib-per-hour`, `--max-fd-growth`, `--max-task-growth`), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import websockets

from voxserve import process_stats
from voxserve.bench import soak_report
from voxserve.bench.interruptions import LONG_ANSWER_CONTEXT, LONG_INSTRUCTIONS
from voxserve.bench.load import (
    CONNECT_ERRORS,
    TAIL_SILENCE_S,
    Answer,
    Clip,
    Conn,
    LoadSpec,
    TurnRecord,
    connect,
    finish_turn,
    make_clip,
    speech_turn,
    tool_turn,
)
from voxserve.bench.report import environment
from voxserve.bench.server import LocalServer
from voxserve.client import RATE, is_event, read_wav, send_speech
from voxserve.protocol.client_events import ResponseCreateEvent
from voxserve.protocol.server_events import ErrorEvent

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CLIPS = sorted((REPO / "tests" / "data").glob("*.wav"))
GOLDEN = (5 ** 0.5 - 1) / 2  # successive fractional parts of n * GOLDEN spread evenly over [0, 1)
INTERRUPTION_S = 2.5  # the interrupting speech: the first 2.5 s of a clip, as bench.interruptions


# Ray's own processes, by the start of their command line (executable and script: later
# arguments name other processes' sockets); the replicas report themselves through /stats.
RAY_PROCESSES = {
    "raylet": re.compile(r"^\S*/raylet( |$)"),
    "gcs_server": re.compile(r"^\S*/gcs_server( |$)"),
    "serve_proxy": re.compile(r"^ray::ProxyActor"),
    "serve_controller": re.compile(r"^ray::ServeController"),
    "dashboard_agent": re.compile(r"^ray::DashboardAgent"),
    "runtime_env_agent": re.compile(r"^ray::RuntimeEnvAgent"),
    "log_monitor": re.compile(r"^\S*python\S* (-u )?\S*/log_monitor\.py"),
    "serve_driver": re.compile(r"^\S*(python\S* -m voxserve\.cli|/voxserve) serve( |$)"),
}


def turn_kind(x: float, barge_share: float, tool_share: float) -> str:
    """The kind of a turn at position `x` (in [0, 1)) of the golden-ratio sequence."""
    x %= 1.0
    return "tool" if x < tool_share else "barge_in" if x < tool_share + barge_share else "speech"


def ray_process_name(cmd: str, port: int | None = None) -> str | None:
    """Which of RAY_PROCESSES a command line (arguments joined by spaces) is; the driver only when
    it serves `port` (or names no port)."""
    for name, pattern in RAY_PROCESSES.items():
        if pattern.search(cmd):
            if name == "serve_driver" and port is not None and "--port" in cmd.split() \
                    and f"--port {port}" not in cmd:
                return None
            return name
    return None


def ray_processes(port: int | None = None) -> dict[str, int]:
    """Ray's processes on this host by name, from /proc (a second one of a name gets its pid
    appended)."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if (name := ray_process_name(cmd.strip(), port)) is not None:
            found[name if name not in found else f"{name}-{entry.name}"] = int(entry.name)
    return dict(sorted(found.items()))


def _message(role: str, kind: str, text: str) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def _stats(http: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{http}/stats", timeout=30) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


async def barge_in_turn(conn: Conn, clips: list[Clip], rng: random.Random, record: TurnRecord,
                        deadline: float) -> None:
    """Ask for a long answer and speak over it as soon as its first audio arrives; then let the
    interrupting speech's own answer finish.

    The long answer's context is the request alone (`input`), not the conversation: with a few
    turns of history the small model often answered the counting prompt in one short sentence,
    which the server had sent whole before the user spoke (output is not paced)."""
    await conn.send(ResponseCreateEvent(type="response.create", response={
        "instructions": LONG_INSTRUCTIONS, "tool_choice": "none",
        "input": [_message(role, kind, text) for role, kind, text in LONG_ANSWER_CONTEXT]}))
    other = rng.choice(clips)
    record.clip = other.name
    answer = Answer()
    interrupter: asyncio.Task[None] | None = None
    onset = 0.0
    try:
        while answer.done is None:
            at, ev = await conn.next(deadline)
            answer.feed(at, ev)
            if is_event(ev, ErrorEvent):
                record.errors.append(ev["error"].get("code") or "unknown")
            if interrupter is None and answer.first_delta is not None:
                t1 = time.monotonic()
                onset = t1 + other.speech_start_s
                interrupter = asyncio.create_task(send_speech(
                    conn.ws.send, other.audio[: int(INTERRUPTION_S * RATE)], TAIL_SILENCE_S, t0=t1))
        await finish_turn(conn, answer, record, deadline, interrupter, onset)
    finally:
        if interrupter is not None:
            interrupter.cancel()
            await asyncio.gather(interrupter, return_exceptions=True)


@dataclass
class Soak:
    """One run: the conversations, the sampler and what they recorded."""

    spec: LoadSpec
    clips: list[Clip]
    http: str
    sessions: int
    duration_s: float
    reconnect_every: int
    sample_every_s: float
    settle_s: float = 5.0
    local: bool = True
    port: int | None = None
    records: list[TurnRecord] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    client_errors: dict[str, int] = field(default_factory=dict)
    sessions_opened: int = 0

    def _error(self, code: str) -> None:
        self.client_errors[code] = self.client_errors.get(code, 0) + 1

    async def run(self) -> None:
        self._start = time.monotonic()
        self._stop_at = self._start + self.duration_s
        await self._sample("idle")
        async with asyncio.TaskGroup() as tg:
            talkers = [tg.create_task(self._conversation(i)) for i in range(self.sessions)]
            pending = set(talkers)
            while pending:
                _, pending = await asyncio.wait(pending, timeout=self.sample_every_s)
                if pending:
                    await self._sample("load")
        # let the server finish closing the last sessions before the idle sample
        await asyncio.sleep(self.settle_s)
        await self._sample("idle")

    async def _conversation(self, index: int) -> None:
        rng = random.Random(f"{self.spec.seed}-{index}")
        position = rng.random()
        turn = 0
        await asyncio.sleep(rng.uniform(0, 2.0))  # so sessions do not speak in lockstep
        while time.monotonic() < self._stop_at:
            try:
                conn = await connect(self.spec)
            except (*CONNECT_ERRORS, websockets.ConnectionClosed) as exc:
                self._error(f"connect: {type(exc).__name__}")
                await asyncio.sleep(2.0)
                continue
            self.sessions_opened += 1
            try:
                for _ in range(self.reconnect_every):
                    if time.monotonic() >= self._stop_at:
                        break
                    kind = turn_kind(position + turn * GOLDEN, self.spec.barge_share,
                                     self.spec.tool_share)
                    record = TurnRecord("soak", self.sessions, index, turn, kind)
                    turn += 1
                    if not await self._turn(conn, rng, record):
                        break  # a timed-out turn leaves stray events: start a fresh session
                    await asyncio.sleep(rng.expovariate(1.0 / self.spec.think_s)
                                        if self.spec.think_s > 0 else 0)
            except websockets.ConnectionClosed as exc:
                self._error(f"connection closed: {exc.rcvd.code if exc.rcvd else 'none'}")
            except (KeyError, AssertionError, ValueError) as exc:  # a malformed or unexpected event
                self._error(f"client: {type(exc).__name__}")
            finally:
                await conn.close()

    async def _turn(self, conn: Conn, rng: random.Random, record: TurnRecord) -> bool:
        deadline = time.monotonic() + self.spec.turn_timeout_s
        try:
            if record.kind == "tool":
                await tool_turn(conn, rng, record, deadline, self.spec.tool_choice)
            elif record.kind == "barge_in":
                await barge_in_turn(conn, self.clips, rng, record, deadline)
            else:
                await speech_turn(conn, self.clips, rng, record, deadline, barge_in=False)
        except TimeoutError:
            record.status = "timeout"
        finally:
            self.records.append(record)
        return record.status != "timeout"

    async def _sample(self, phase: str) -> None:
        t = round(time.monotonic() - self._start, 1)
        procs: dict[str, Any] = {}
        open_sessions = None
        try:
            stats = await asyncio.to_thread(_stats, self.http)
            procs.update(soak_report.processes_from_stats(stats))
            open_sessions = stats.get("sessions")
        except (OSError, ValueError) as exc:
            self._error(f"stats: {type(exc).__name__}")
        procs["client"] = process_stats.read()
        if self.local:
            for name, pid in ray_processes(self.port).items():
                ps = process_stats.read(pid)
                if ps["rss_bytes"] is not None:  # it may have exited since the scan
                    procs[name] = ps
        self.samples.append({"t": t, "wall": round(time.time(), 2), "phase": phase,
                             "open_sessions": open_sessions, "processes": procs})
        print(self._progress(t, phase, procs), file=sys.stderr, flush=True)

    def _progress(self, t: float, phase: str, procs: dict[str, Any]) -> str:
        rows = [r.row() for r in self.records]
        s = soak_report.turn_summary(rows)
        errors = sum(soak_report.errors(rows, self.client_errors).values())
        mem = " ".join(f"{n} {p['rss_bytes'] / soak_report.MIB:.0f}" for n, p in procs.items()
                       if p.get("rss_bytes") is not None)
        server = " ".join(f"{n} {p.get('num_fds')}fd/{p.get('tasks')}t" for n, p in procs.items()
                          if n in ("ingress", "asr", "llm", "tts"))
        return (f"[soak] {t:6.0f}/{self.duration_s:.0f} s {phase:<4} turns {s['turns']} "
                f"(barge-ins {s['barge_ins_landed']}, tools {s['tool_calls_completed']}) "
                f"errors {errors} | MiB: {mem} | {server}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="ws://host:port/v1/realtime of a running server")
    p.add_argument("--api-key", default=os.environ.get("VOXSERVE_API_KEY"))
    # 2: ~70 % of this turn mix's saturation on 2 cores (at 3, TTFA p50 was 7 s and 4 turns
    # timed out: docs/perf/soak-report.md)
    p.add_argument("--sessions", type=int, default=2)
    p.add_argument("--config", default=str(REPO / "bench" / "configs" / "soak.yaml"),
                   help="options file of the server it starts (without --url)")
    p.add_argument("--duration", type=float, default=1800.0, help="seconds of conversation")
    p.add_argument("--reconnect-every", type=int, default=6, help="turns per session")
    p.add_argument("--barge-share", type=float, default=0.25)
    p.add_argument("--tool-share", type=float, default=0.2)
    p.add_argument("--think", type=float, default=1.0, help="mean think time between turns (s)")
    p.add_argument("--sample-every", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--warmup-share", type=float, default=0.1,
                   help="share of the duration left out of the memory slope")
    p.add_argument("--settle", type=float, default=5.0,
                   help="seconds after the last session closed before the idle sample")
    p.add_argument("--turn-timeout", type=float, default=120.0)
    # about a minute of speech; the long counting answer of the barge-ins is ~100 tokens. Without
    # a cap the first 2-session run had 3 turns time out in 9 minutes on answers that rambled
    # past 100 s (output is paced to real time, so a turn lasts as long as its answer speaks)
    p.add_argument("--max-output-tokens", type=int, default=200)
    p.add_argument("--max-slope-mib-per-hour", type=float, default=soak_report.Limits.max_slope_mib_per_hour)
    p.add_argument("--max-fd-growth", type=int, default=soak_report.Limits.max_fd_growth)
    p.add_argument("--max-task-growth", type=int, default=soak_report.Limits.max_task_growth)
    p.add_argument("--clips", nargs="*", default=[str(c) for c in DEFAULT_CLIPS])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/soak")
    args = p.parse_args(argv)
    if not (0 <= args.barge_share and 0 <= args.tool_share and args.barge_share + args.tool_share <= 1):
        p.error("--barge-share and --tool-share must be >= 0 and add up to at most 1")
    if min(args.sessions, args.reconnect_every) < 1 or min(args.duration, args.sample_every) <= 0:
        p.error("--sessions, --reconnect-every, --duration and --sample-every must be positive")
    if not 0 <= args.warmup_share < 1:
        p.error("--warmup-share must be in [0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clips = [make_clip(Path(c).stem, read_wav(c)) for c in args.clips]
    limits = soak_report.Limits(args.max_slope_mib_per_hour, args.max_fd_growth,
                                args.max_task_growth)
    server = None
    url = args.url
    if url is None:
        print(f"[soak] starting voxserve serve --config {args.config}", file=sys.stderr,
              flush=True)
        log = REPO / "bench" / "results" / "soak-server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        server = LocalServer(log, args.config)
        url = server.url
    parts = urlsplit(url)
    http = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"
    spec = LoadSpec(url=url, config="soak", api_key=args.api_key, think_s=args.think,
                    barge_share=args.barge_share, tool_share=args.tool_share,
                    tool_choice="required", turn_timeout_s=args.turn_timeout, seed=args.seed,
                    max_output_tokens=args.max_output_tokens)
    soak = Soak(spec, clips, http, args.sessions, args.duration, args.reconnect_every,
                args.sample_every, args.settle,
                local=parts.hostname in ("127.0.0.1", "localhost", "::1"), port=parts.port)
    started = time.monotonic()
    try:
        asyncio.run(soak.run())
    finally:
        if server is not None:
            server.stop()
    warmup_s = args.warmup_share * args.duration
    rows = [r.row() for r in soak.records]
    report: dict[str, Any] = {
        "shape": {"sessions": args.sessions, "duration_s": args.duration,
                  "reconnect_every": args.reconnect_every, "barge_share": args.barge_share,
                  "tool_share": args.tool_share, "think_s": args.think,
                  "sample_every_s": args.sample_every, "seed": args.seed},
        "environment": environment(), "wall_s": round(time.monotonic() - started, 1),
        "warmup_s": warmup_s, "limits": asdict(limits), "sessions_opened": soak.sessions_opened,
        "processes": soak_report.analyse(soak.samples, warmup_s, limits),
        "turns": soak_report.turn_summary(rows),
        "errors": soak_report.errors(rows, soak.client_errors),
    }
    failures = [f"{n}: {', '.join(p['over'])}" for n, p in report["processes"].items() if p["over"]]
    if report["errors"]:
        failures.append(f"{sum(report['errors'].values())} unexpected errors")
    report["failures"], report["ok"] = failures, not failures
    report["plot"] = "soak-memory.png" if soak_report.plot(soak.samples, warmup_s,
                                                            out / "soak-memory.png") else None
    (out / "soak.json").write_text(json.dumps({**report, "samples": soak.samples,
                                               "turn_rows": rows}, indent=1))
    (out / "soak-samples.csv").write_text(soak_report.samples_csv(soak.samples))
    (out / "soak-report.md").write_text(soak_report.markdown(report))
    print(soak_report.markdown(report))
    print(f"[soak] wrote {out}/soak-report.md, soak.json, soak-samples.csv"
          + (", soak-memory.png" if report["plot"] else ""), file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
