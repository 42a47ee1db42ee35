"""The soak run's analysis: process samples -> memory slope per process, descriptor and task
deltas, turn and error tallies, the markdown report and the memory plot. Pure functions of the
samples and turn rows (`bench/soak.py` collects them), so they are tested without a server.

A sample is `{"t": s since start, "phase": "idle" | "load", "processes": {name: ProcessStats}}`.
The first and last samples are idle (before the first session opens, after the last one closed),
so their difference in descriptors and tasks is what the run left behind.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxserve.bench.report import error_counts, pct

MIB = 2**20
FIELDS = ("pid", "rss_bytes", "num_fds", "tasks", "threads")


@dataclass(frozen=True)
class Limits:
    """What fails a run. Defaults are loose enough for a 30-minute run on a noisy 2-core box:
    allocator and model caches settle in steps of tens of MiB, so a 5-minute run's slope is
    mostly noise, while a real leak of a few KiB per turn reaches them over the long run."""

    max_slope_mib_per_hour: float = 100.0
    max_fd_growth: int = 16
    max_task_growth: int = 16


def processes_from_stats(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-process entries of a `/stats` answer: the ingress's own and each deployment's."""
    out: dict[str, dict[str, Any]] = {}
    if isinstance(stats.get("process"), dict):
        out["ingress"] = stats["process"]
    for name, info in (stats.get("deployments") or {}).items():
        if isinstance(info, dict) and isinstance(info.get("process"), dict):
            out[name] = info["process"]
    return out


def slope_mib_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, bytes) in MiB per hour; None under 3 points or no span."""
    if len(points) < 3:
        return None
    x = np.asarray([p[0] for p in points], dtype=float)
    y = np.asarray([p[1] for p in points], dtype=float)
    if np.ptp(x) == 0:
        return None
    dx = x - x.mean()
    return float((dx * (y - y.mean())).sum() / (dx * dx).sum() * 3600 / MIB)


def _delta(first: dict[str, Any], last: dict[str, Any], key: str) -> int | None:
    a, b = first.get(key), last.get(key)
    return None if a is None or b is None else int(b) - int(a)


def analyse(samples: list[dict[str, Any]], warmup_s: float, limits: Limits) -> dict[str, dict[str, Any]]:
    """Per process: RSS first / last / max, slope over the load samples after the warm-up, and
    first-to-last deltas of descriptors, tasks and threads, with what breaks `limits`."""
    names = list(dict.fromkeys(n for s in samples for n in s["processes"]))
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        rows = [(s["t"], s["phase"], s["processes"][name]) for s in samples if name in s["processes"]]
        first, last = rows[0][2], rows[-1][2]
        rss = [p["rss_bytes"] for _, _, p in rows if p.get("rss_bytes") is not None]
        slope = slope_mib_per_hour([(t, p["rss_bytes"]) for t, phase, p in rows
                                    if phase == "load" and t >= warmup_s
                                    and p.get("rss_bytes") is not None])
        pids = list(dict.fromkeys(p["pid"] for _, _, p in rows))
        a = {"samples": len(rows), "pids": pids,
             "rss_first_mib": round(rss[0] / MIB, 1) if rss else None,
             "rss_last_mib": round(rss[-1] / MIB, 1) if rss else None,
             "rss_max_mib": round(max(rss) / MIB, 1) if rss else None,
             "slope_mib_per_hour": None if slope is None else round(slope, 1),
             **{f"{k}_first": first.get(k) for k in ("num_fds", "tasks", "threads")},
             **{f"{k}_last": last.get(k) for k in ("num_fds", "tasks", "threads")},
             "fd_delta": _delta(first, last, "num_fds"),
             "task_delta": _delta(first, last, "tasks"),
             "thread_delta": _delta(first, last, "threads")}
        over = []
        if len(pids) > 1:  # a restarted replica: its deltas compare two processes
            over.append(f"restarted ({len(pids)} pids)")
        if slope is not None and slope > limits.max_slope_mib_per_hour:
            over.append(f"slope {slope:.0f} > {limits.max_slope_mib_per_hour:g} MiB/h")
        if a["fd_delta"] is not None and a["fd_delta"] > limits.max_fd_growth:
            over.append(f"fds +{a['fd_delta']} > {limits.max_fd_growth}")
        if a["task_delta"] is not None and a["task_delta"] > limits.max_task_growth:
            over.append(f"tasks +{a['task_delta']} > {limits.max_task_growth}")
        a["over"] = over
        out[name] = a
    return out


def turn_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the conversations did: turns by kind and status, barge-ins that landed, tool calls
    answered, and TTFA of the spoken turns (to check the load was the one intended)."""
    turns = [r for r in rows if r["kind"] in ("speech", "barge_in", "tool")]
    statuses: dict[str, int] = {}
    for r in turns:
        statuses[r["status"] or "none"] = statuses.get(r["status"] or "none", 0) + 1
    barge = [r for r in turns if r["kind"] == "barge_in"]
    tool = [r for r in turns if r["kind"] == "tool"]
    return {
        "turns": len(turns), "statuses": statuses,
        "speech_turns": sum(r["kind"] == "speech" for r in turns),
        "barge_in_turns": len(barge),
        # cancelled by the user's speech: the injected interruption, not an error
        "barge_ins_landed": sum(r["status"] == "cancelled" for r in barge),
        "barge_ins_missed": sum(r["status"] == "completed" for r in barge),
        "tool_turns": len(tool),
        "tool_calls_completed": sum(r["tool_calls"] > 0 and r["status"] == "completed" for r in tool),
        # a plain spoken turn cancelled: the VAD heard the clip's own pause as a new turn
        "spoken_turns_cancelled": sum(r["status"] == "cancelled" for r in turns
                                      if r["kind"] == "speech"),
        "ttfa_ms": pct([r["ttfa_ms"] for r in turns if r["kind"] == "speech"
                        and r["ttfa_ms"] is not None]),
        "barge_in_stop_ms": pct([r["barge_in_stop_ms"] for r in barge
                                 if r["barge_in_stop_ms"] is not None]),
    }


def errors(rows: list[dict[str, Any]], client_errors: dict[str, int]) -> dict[str, int]:
    """Unexpected errors by code: the turns' (error events, timeouts, failed responses) and the
    client's own (an unreachable `/stats`, a dropped socket, an exception in a conversation).
    Barge-ins are injected; their cancelled answers are statuses, never counted here."""
    out = error_counts(rows)
    for code, n in client_errors.items():
        out[code] = out.get(code, 0) + n
    return out


def samples_csv(samples: list[dict[str, Any]]) -> str:
    """One row per (sample, process), long format."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["t_s", "phase", "process", *FIELDS])
    for s in samples:
        for name, p in s["processes"].items():
            w.writerow([s["t"], s["phase"], name, *("" if p.get(k) is None else p[k] for k in FIELDS)])
    return buf.getvalue()


def _cell(v: Any) -> str:
    return "-" if v is None else f"{v:+d}" if isinstance(v, int) else str(v)


def markdown(report: dict[str, Any]) -> str:
    a, t, e, lim = report["processes"], report["turns"], report["errors"], report["limits"]
    shape = report["shape"]
    lines = ["# VoxServe soak run", "",
             f"{shape['sessions']} concurrent conversations for {shape['duration_s']:.0f} s "
             f"({report['wall_s']:.0f} s with the last turns and the idle samples), reconnecting "
             f"every {shape['reconnect_every']} turns ({report['sessions_opened']} sessions "
             f"opened); barge-in share {shape['barge_share']}, tool share {shape['tool_share']} "
             f"(`tool_choice: required`); samples every {shape['sample_every_s']:g} s, slope after "
             f"a {report['warmup_s']:.0f} s warm-up; {report['environment']['cpus']} CPUs.", "",
             f"Verdict: **{'PASS' if report['ok'] else 'FAIL'}**"
             + ("" if report["ok"] else " (" + "; ".join(report["failures"]) + ")"), "",
             "## Processes", "",
             "| process | pid | samples | RSS first | last | max (MiB) | slope (MiB/h) "
             "| fds first → last | tasks first → last | threads first → last | over a limit |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, p in a.items():
        def arrow(k: str, p: dict[str, Any] = p) -> str:
            f, la = p[f"{k}_first"], p[f"{k}_last"]
            return "-" if f is None else f"{f} → {la}"
        lines.append(f"| {name} | {', '.join(map(str, p['pids']))} | {p['samples']} | "
                     f"{_cell(p['rss_first_mib'])} | {_cell(p['rss_last_mib'])} | "
                     f"{_cell(p['rss_max_mib'])} | {_cell(p['slope_mib_per_hour'])} | "
                     f"{arrow('num_fds')} | {arrow('tasks')} | {arrow('threads')} | "
                     f"{', '.join(p['over']) or 'no'} |")
    ttfa, stop = t["ttfa_ms"], t["barge_in_stop_ms"]
    lines += ["", "## Conversations", "",
              f"- turns: {t['turns']} ({t['speech_turns']} spoken, {t['barge_in_turns']} barge-in, "
              f"{t['tool_turns']} tool); statuses: "
              + ", ".join(f"{k} {v}" for k, v in sorted(t["statuses"].items())),
              f"- barge-ins that cut the answer: {t['barge_ins_landed']} (the answer had ended "
              f"first: {t['barge_ins_missed']}); stop latency p50 {stop.get('p50', '-')} ms, "
              f"p95 {stop.get('p95', '-')} ms",
              f"- tool calls made and answered, then spoken: {t['tool_calls_completed']} of "
              f"{t['tool_turns']}",
              f"- spoken turns cancelled by the clip's own pause: {t['spoken_turns_cancelled']}",
              f"- TTFA of spoken turns: p50 {ttfa.get('p50', '-')} ms, p95 {ttfa.get('p95', '-')} ms "
              f"(n {ttfa.get('n', 0)})",
              "- unexpected errors: " + (", ".join(f"{k} {v}" for k, v in sorted(e.items()))
                                         or "none"), "",
              f"Limits: slope ≤ {lim['max_slope_mib_per_hour']:g} MiB/h, fd growth ≤ "
              f"{lim['max_fd_growth']}, task growth ≤ {lim['max_task_growth']} (first and last "
              "samples are idle: before the first session, after the last one closed). Tasks are "
              "counted in the process's event loop (the replica's user loop for Serve); a stage "
              "with several replicas is read through whichever replica its handle picks.", ""]
    if report.get("plot"):
        lines += [f"![memory per process]({report['plot']})", ""]
    return "\n".join(lines)


def plot(samples: list[dict[str, Any]], warmup_s: float, out: Path) -> bool:
    """RSS over time per process: the Serve replicas on top, Ray's processes and the client
    below (their scales differ tenfold). False when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(n for s in samples for n in s["processes"]))
    serve = [n for n in names if n in ("ingress", "asr", "llm", "tts")]
    groups = [("Serve replicas", serve), ("Ray and the client", [n for n in names if n not in serve])]
    fig, axes = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for ax, (title, group) in zip(axes, groups, strict=True):
        for name in group:
            pts = [(s["t"] / 60, s["processes"][name]["rss_bytes"] / MIB) for s in samples
                   if name in s["processes"] and s["processes"][name].get("rss_bytes") is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=".", ms=3, lw=1, label=name)
        ax.axvline(warmup_s / 60, color="grey", ls="--", lw=0.8, label="end of warm-up")
        ax.set_ylabel("RSS (MiB)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=3)
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True
