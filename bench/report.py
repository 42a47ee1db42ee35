"""Benchmark reports: report.json (every turn), report.md (tables) and PNG plots."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)
STAGES = ("end_of_turn_ms", "asr_ms", "context_ms", "llm_first_token_ms", "first_piece_ms",
          "tts_first_chunk_ms", "ttfa_ms")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile by nearest rank (NumPy's inverted CDF), the one percentile of every
    benchmark: always a measured value, never one between two turns. NaN when there are none."""
    if not len(values):
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=float), q, method="inverted_cdf"))


def pct(values: Sequence[float]) -> dict[str, float | int]:
    """n and p50/p90/p95/p99, rounded to 0.1."""
    if not len(values):
        return {"n": 0}
    out: dict[str, float | int] = {"n": len(values)}
    for p in PERCENTILES:
        out[f"p{p}"] = round(percentile(values, p), 1)
    return out


def error_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Error events by code and failed turns by status (a cancelled answer is not an error)."""
    errors: dict[str, int] = {}
    for r in rows:
        for code in r["errors"]:
            errors[code] = errors.get(code, 0) + 1
        if r["status"] in ("timeout", "error", "failed"):
            errors[r["status"]] = errors.get(r["status"], 0) + 1
    return errors


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Client and server figures per (config, concurrency level)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["config"], r["level"]), []).append(r)
    out = []
    for (config, level), rs in sorted(groups.items()):
        turns = [r for r in rs if r["kind"] in ("speech", "barge_in", "tool")]
        errors = error_counts(rs)
        out.append({
            "config": config, "sessions": level, "turns": len(turns),
            "ttfa_ms": pct([r["ttfa_ms"] for r in turns if r["ttfa_ms"] is not None]),
            "leading_silence_ms": pct([r["leading_silence_ms"] for r in turns
                                       if r["leading_silence_ms"] is not None]),
            "end_of_turn_ms": pct([r["end_of_turn_ms"] for r in turns
                                   if r["end_of_turn_ms"] is not None]),
            "barge_in_stop_ms": pct([r["barge_in_stop_ms"] for r in turns
                                     if r["barge_in_stop_ms"] is not None]),
            "server": {s: pct([r["server"][s] for r in turns
                               if r.get("server") and r["server"].get(s) is not None])
                       for s in STAGES},
            "errors": errors,
        })
    return {"levels": out}


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for dist in ("voxserve", "ray", "faster-whisper", "xllamacpp", "hibari-tts", "onnxruntime"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": sys.version.split()[0], "versions": versions}


def _fmt(p: dict[str, Any], key: str) -> str:
    return f"{p[key]:.0f}" if key in p else "-"


def _server_lines(config: str, server: dict[str, Any]) -> list[str]:
    """The server's side of a run: speculative answers by outcome, memory per process."""
    lines: list[str] = []
    counts, seconds = server.get("speculations", {}), server.get("speculation_seconds", {})
    if counts:
        lines += ["", f"## Speculative answers, {config} (LLM started at a pause)", "",
                  "| outcome | count | LLM seconds |", "|---|---|---|"]
        lines += [f"| {k} | {counts[k]:.0f} | {seconds.get(k, 0):.1f} |" for k in sorted(counts)]
        wasted = sum(v for k, v in seconds.items() if k != "adopted")
        lines.append(f"\nWasted (every outcome but adopted): {wasted:.1f} LLM seconds; adopted "
                     f"{counts.get('adopted', 0):.0f} of {sum(counts.values()):.0f}.")
    memory = server.get("memory")
    if memory:
        lines += ["", f"## Server memory after the run, {config} (MiB; PSS shares shared pages)",
                  "", "| process | RSS | PSS |", "|---|---|---|"]
        lines += [f"| {r['name']} | {r['rss_mib']} | {r['pss_mib']} |" for r in memory["by_process"]]
        lines.append(f"| total, {memory['processes']} processes | {memory['rss_mib']} | "
                     f"{memory['pss_mib']} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines = ["# VoxServe load benchmark", "",
             f"Shape: {report['shape']}; seed {report['seed']}; clips: "
             f"{', '.join(report['clips'])}; machine: {report['environment']['cpus']} CPUs.", ""]
    lines += ["## Client-side, per concurrency level (ms)", "",
              "| config | sessions | turns | TTFA p50 | p90 | p95 | p99 | end of turn p50 | p95 "
              "| leading silence p50 | barge-in stop p50 | p95 | errors |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for lv in report["summary"]["levels"]:
        t, e, b, s = lv["ttfa_ms"], lv["end_of_turn_ms"], lv["barge_in_stop_ms"], lv["leading_silence_ms"]
        errors = ", ".join(f"{k}: {v}" for k, v in lv["errors"].items()) or "none"
        lines.append(f"| {lv['config']} | {lv['sessions']} | {lv['turns']} | {_fmt(t, 'p50')} | "
                     f"{_fmt(t, 'p90')} | {_fmt(t, 'p95')} | {_fmt(t, 'p99')} | {_fmt(e, 'p50')} | "
                     f"{_fmt(e, 'p95')} | {_fmt(s, 'p50')} | {_fmt(b, 'p50')} | {_fmt(b, 'p95')} | {errors} |")
    lines += ["", "## Server-side stage breakdown (ms, from `voxserve.response.timing`)", "",
              "| config | sessions | " + " | ".join(f"{s[:-3]} p50 | p95" for s in STAGES) + " |",
              "|---|---|" + "---|---|" * len(STAGES)]
    for lv in report["summary"]["levels"]:
        cells = " | ".join(f"{_fmt(lv['server'][s], 'p50')} | {_fmt(lv['server'][s], 'p95')}"
                           for s in STAGES)
        lines.append(f"| {lv['config']} | {lv['sessions']} | {cells} |")
    for config, sat in (report.get("saturation") or {}).items():
        lines += ["", f"Saturation point of {config} (TTFA p95 over {report['slo_ttfa_p95_ms']} ms): "
                  + ((f"after {sat['last_ok']} sessions; " if sat["last_ok"] else "below 1 session; ")
                     + f"first breach at {sat['first_breach']} ({sat['what']})" if sat
                     else "not reached")]
    if report.get("floors"):
        f = report["floors"]
        lines += ["", "## Stage floors (each stage alone, same machine, same run)", "",
                  "| stage | p50 | p95 |", "|---|---|---|"]
        for name, v in f["stages"].items():
            lines.append(f"| {name} | {_fmt(v, 'p50')} | {_fmt(v, 'p95')} |")
        lines.append(f"\nSum of floors (p50) {f['sum_p50_ms']:.0f} ms; TTFA p50 at the lowest "
                     f"load / sum of floors = {f['ttfa_over_floors']}")
    if report.get("echo"):
        lines += ["", "## Gateway (echo through the ingress, per-frame round trip, ms)", "",
                  "| config | sessions | frames | p50 | p90 | p99 |", "|---|---|---|---|---|---|"]
        for row in report["echo"]:
            r = row["rtt_ms"]
            lines.append(f"| {row['config']} | {row['sessions']} | {r['n']} | {_fmt(r, 'p50')} | "
                         f"{_fmt(r, 'p90')} | {_fmt(r, 'p99')} |")
    for config, server in (report.get("server") or {}).items():
        lines += _server_lines(config, server)
    if report.get("slo"):
        slo = report["slo"]
        lines += ["", f"SLO TTFA p95 <= {slo['limit_ms']} ms: {'PASS' if slo['ok'] else 'FAIL'} "
                  f"(measured {slo['measured_ms']})"]
    return "\n".join(lines) + "\n"


def _save(fig: Any, ax: Any, out: Path, name: str, xlabel: str | None, ylabel: str,
          title: str) -> str:
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return name


def plots(report: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = report["turns"]
    configs = sorted({r["config"] for r in rows})
    fig, ax = plt.subplots(figsize=(6, 4))
    for config in configs:
        for level in sorted({r["level"] for r in rows if r["config"] == config}):
            v = np.sort([r["ttfa_ms"] for r in rows if r["config"] == config and r["level"] == level
                         and r["ttfa_ms"] is not None])
            if v.size:
                ax.step(v, np.arange(1, v.size + 1) / v.size, where="post",
                        label=f"{config}, {level} sessions")
    written.append(_save(fig, ax, out, "ttfa_cdf.png", "TTFA (ms)", "fraction of turns",
                         "Time to first audio, CDF"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for config in configs:
        lv = [x for x in report["summary"]["levels"] if x["config"] == config and x["ttfa_ms"]["n"]]
        xs = [x["sessions"] for x in lv]
        for p, style in (("p50", "o-"), ("p95", "s--")):
            ax.plot(xs, [x["ttfa_ms"][p] for x in lv], style, label=f"{config} {p}")
    if report.get("slo_ttfa_p95_ms"):
        ax.axhline(report["slo_ttfa_p95_ms"], color="red", lw=0.8, label="SLO p95")
    written.append(_save(fig, ax, out, "ttfa_vs_concurrency.png", "concurrent sessions",
                         "TTFA (ms)", "TTFA vs concurrency"))

    fig, ax = plt.subplots(figsize=(7, 4))
    levels = report["summary"]["levels"]
    labels = [f"{x['config']}\n{x['sessions']}s" for x in levels]
    bottom = np.zeros(len(levels))
    for stage in STAGES[:-1]:
        vals = np.array([x["server"][stage].get("p50", 0.0) for x in levels])
        ax.bar(labels, vals, bottom=bottom, label=stage[:-3])
        bottom += vals
    ax.plot(labels, [x["server"]["ttfa_ms"].get("p50", 0.0) for x in levels], "k*",
            markersize=10, label="TTFA p50")
    written.append(_save(fig, ax, out, "stages.png", None, "ms (p50)", "Server stage breakdown"))
    return written


def write(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report["plots"] = plots(report, out) if report["turns"] else []
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
