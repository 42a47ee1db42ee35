"""The soak benchmark's arithmetic and parsing: memory slope, leak deltas, error and turn tallies,
`/stats` parsing, the turn-kind sequence and the process reader. No server, no Ray."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from voxserve import process_stats
from voxserve.bench import soak_report
from voxserve.bench.soak import GOLDEN, ray_process_name, turn_kind
from voxserve.bench.soak_report import MIB, Limits

pytestmark = pytest.mark.unit


def _proc(rss_mib: float, fds: int = 10, tasks: int | None = 5, pid: int = 100) -> dict[str, Any]:
    return {"pid": pid, "rss_bytes": int(rss_mib * MIB), "num_fds": fds, "tasks": tasks, "threads": 8}


def _samples(series: dict[str, list[dict[str, Any]]], every: float = 10.0) -> list[dict[str, Any]]:
    n = len(next(iter(series.values())))
    return [{"t": i * every, "phase": "idle" if i in (0, n - 1) else "load",
             "processes": {name: values[i] for name, values in series.items()}} for i in range(n)]


def test_slope_is_mib_per_hour_and_needs_three_points() -> None:
    # 1 MiB every 36 s is 100 MiB per hour
    points = [(t, 500 * MIB + t / 36 * MIB) for t in range(0, 360, 36)]
    assert soak_report.slope_mib_per_hour(points) == pytest.approx(100.0)
    assert soak_report.slope_mib_per_hour(points[:2]) is None
    assert soak_report.slope_mib_per_hour([(5.0, 1.0)] * 4) is None  # no time span
    flat_noise = [(t, 800 * MIB + (MIB if i % 2 else -MIB)) for i, t in enumerate(range(0, 3600, 60))]
    assert abs(soak_report.slope_mib_per_hour(flat_noise) or 0) < 1.0


def test_slope_leaves_out_the_warm_up_and_the_idle_samples() -> None:
    # a 200 MiB step while the models warm, flat afterwards: no slope once the warm-up is skipped
    rss = [400] + [450, 550] + [600] * 20 + [300]  # the final idle sample drops (freed sessions)
    samples = _samples({"llm": [_proc(v) for v in rss]})
    llm = soak_report.analyse(samples, warmup_s=25.0, limits=Limits())["llm"]
    assert llm["slope_mib_per_hour"] == 0.0
    assert (llm["rss_first_mib"], llm["rss_last_mib"], llm["rss_max_mib"]) == (400.0, 300.0, 600.0)
    assert soak_report.analyse(samples, warmup_s=0.0, limits=Limits())["llm"]["slope_mib_per_hour"] > 0


def test_leaked_descriptors_and_tasks_are_first_to_last_and_flagged_over_the_limits() -> None:
    fds = [40, 60, 61, 62, 41]  # busy while sessions are open, back to idle: no leak
    tasks = [12, 30, 31, 30, 40]  # 28 tasks left behind once every session closed: a leak
    samples = _samples({"ingress": [_proc(300, f, t) for f, t in zip(fds, tasks, strict=True)]})
    ingress = soak_report.analyse(samples, 0.0, Limits(max_task_growth=16))["ingress"]
    assert (ingress["fd_delta"], ingress["task_delta"], ingress["thread_delta"]) == (1, 28, 0)
    assert ingress["over"] == ["tasks +28 > 16"]
    steep = _samples({"asr": [_proc(300 + 50 * i) for i in range(5)]})  # 50 MiB / 10 s
    assert soak_report.analyse(steep, 0.0, Limits())["asr"]["over"] == ["slope 18000 > 100 MiB/h"]


def test_a_restarted_process_and_a_process_without_tasks() -> None:
    samples = _samples({"tts": [_proc(200, pid=1), _proc(200, pid=1), _proc(200, pid=2)],
                        "raylet": [_proc(50, tasks=None)] * 3})
    a = soak_report.analyse(samples, 0.0, Limits())
    assert a["tts"]["pids"] == [1, 2] and a["tts"]["over"] == ["restarted (2 pids)"]
    assert a["raylet"]["task_delta"] is None and a["raylet"]["over"] == []


def test_processes_come_from_every_stats_entry_and_old_fields_are_ignored() -> None:
    stats = {"sessions": 2, "recent_barge_ins": [1.0], "process": _proc(300, pid=1),
             "deployments": {"asr": {"kind": "asr", "completed": 3, "process": _proc(700, pid=2)},
                             "llm": {"kind": "llm", "completed": 3, "process": _proc(900, pid=3)},
                             "tts": {"kind": "tts"}}}  # an older replica without the field
    procs = soak_report.processes_from_stats(stats)
    assert list(procs) == ["ingress", "asr", "llm"]
    assert [p["pid"] for p in procs.values()] == [1, 2, 3]
    assert soak_report.processes_from_stats({}) == {}


def _row(kind: str, status: str, errors: tuple[str, ...] = (), tool_calls: int = 0,
         ttfa: float | None = 3000.0, stop: float | None = None) -> dict[str, Any]:
    return {"kind": kind, "status": status, "errors": list(errors), "tool_calls": tool_calls,
            "ttfa_ms": ttfa, "barge_in_stop_ms": stop}


def test_cancelled_barge_ins_are_not_errors_and_tool_calls_count_when_answered() -> None:
    rows = [_row("speech", "completed"), _row("speech", "cancelled"),
            _row("barge_in", "cancelled", stop=700.0), _row("barge_in", "completed"),
            _row("tool", "completed", tool_calls=1), _row("tool", "completed"),
            _row("tool", "timeout", tool_calls=1), _row("speech", "failed", ("server_error",)),
            _row("session", "error", ("connection closed: 1011",))]
    t = soak_report.turn_summary(rows)
    assert (t["turns"], t["speech_turns"], t["barge_in_turns"], t["tool_turns"]) == (8, 3, 2, 3)
    assert (t["barge_ins_landed"], t["barge_ins_missed"]) == (1, 1)
    assert t["tool_calls_completed"] == 1 and t["spoken_turns_cancelled"] == 1
    assert t["barge_in_stop_ms"]["n"] == 1 and t["ttfa_ms"]["n"] == 3
    errors = soak_report.errors(rows, {"stats: URLError": 2})
    assert errors == {"timeout": 1, "server_error": 1, "failed": 1, "connection closed: 1011": 1,
                      "error": 1, "stats: URLError": 2}
    assert "cancelled" not in errors
    assert soak_report.errors([_row("barge_in", "cancelled")], {}) == {}


def test_turn_kinds_meet_their_shares_over_a_few_turns() -> None:
    for offset in (0.0, 0.3, 0.77):
        kinds = [turn_kind(offset + n * GOLDEN, 0.4, 0.4) for n in range(3)]
        assert "tool" in kinds and "barge_in" in kinds, (offset, kinds)
        many = [turn_kind(offset + n * GOLDEN, 0.25, 0.2) for n in range(200)]
        assert abs(many.count("barge_in") / 200 - 0.25) < 0.02
        assert abs(many.count("tool") / 200 - 0.2) < 0.02
    assert {turn_kind(n * GOLDEN, 0.0, 0.0) for n in range(50)} == {"speech"}


def _report(samples: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    limits = Limits()
    processes = soak_report.analyse(samples, 0.0, limits)
    errors = soak_report.errors(rows, {})
    failures = [f"{n}: {', '.join(p['over'])}" for n, p in processes.items() if p["over"]]
    return {"shape": {"sessions": 2, "duration_s": 60.0, "reconnect_every": 2, "barge_share": 0.4,
                      "tool_share": 0.4, "sample_every_s": 10.0},
            "wall_s": 80.0, "warmup_s": 6.0, "sessions_opened": 4, "environment": {"cpus": 2},
            "limits": {"max_slope_mib_per_hour": 100.0, "max_fd_growth": 16, "max_task_growth": 16},
            "processes": processes, "turns": soak_report.turn_summary(rows), "errors": errors,
            "failures": failures, "ok": not failures and not errors, "plot": "soak-memory.png"}


def test_markdown_has_a_row_per_process_and_the_verdict() -> None:
    samples = _samples({"ingress": [_proc(300, 40, 12)] * 5, "client": [_proc(90, 9, 3)] * 5})
    md = soak_report.markdown(_report(samples, [_row("barge_in", "cancelled", stop=650.0),
                                                _row("tool", "completed", tool_calls=1)]))
    assert "Verdict: **PASS**" in md
    assert "| ingress | 100 | 5 | 300.0 | 300.0 | 300.0 | 0.0 | 40 → 40 | 12 → 12 | 8 → 8 | no |" in md
    assert "| client |" in md and "barge-ins that cut the answer: 1" in md
    assert "unexpected errors: none" in md and "![memory per process](soak-memory.png)" in md
    failing = soak_report.markdown(_report(samples, [_row("speech", "timeout")]))
    assert "Verdict: **FAIL**" in failing and "unexpected errors: timeout 1" in failing


def test_samples_csv_is_one_row_per_process_sample() -> None:
    samples = _samples({"llm": [_proc(900), _proc(901)], "raylet": [_proc(50, tasks=None)] * 2})
    rows = list(csv.DictReader(io.StringIO(soak_report.samples_csv(samples))))
    assert len(rows) == 4 and rows[0]["process"] == "llm" and rows[0]["phase"] == "idle"
    assert int(rows[2]["rss_bytes"]) == int(901 * MIB) and rows[1]["tasks"] == ""


def test_plot_draws_every_process(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    samples = _samples({"llm": [_proc(900 + i) for i in range(5)],
                        "raylet": [_proc(50) for _ in range(5)]})
    assert soak_report.plot(samples, 10.0, tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 1000


def test_process_stats_reads_this_process_and_another_one() -> None:
    own = process_stats.read()
    assert own["pid"] == os.getpid() and own["tasks"] is None  # no running loop here
    assert (own["rss_bytes"] or 0) > 1 * MIB and (own["num_fds"] or 0) >= 3 and (own["threads"] or 0) >= 1

    async def in_loop() -> process_stats.ProcessStats:
        await asyncio.sleep(0)
        return process_stats.read()
    assert (asyncio.run(in_loop())["tasks"] or 0) >= 1

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        other = process_stats.read(child.pid)
        assert other["pid"] == child.pid and other["tasks"] is None
        assert (other["rss_bytes"] or 0) > 0 and (other["num_fds"] or 0) >= 3
    finally:
        child.kill()
        child.wait()
    gone = process_stats.read(child.pid)
    assert gone["rss_bytes"] is None and gone["num_fds"] is None and gone["threads"] is None


def test_ray_processes_are_named_by_their_executable_not_their_arguments() -> None:
    venv = "/v/lib/python3.11/site-packages/ray"
    raylet = (f"{venv}/core/src/ray/raylet/raylet --raylet_socket_name=/tmp/s/raylet "
              f"--dashboard_agent_command=/v/bin/python -u {venv}/dashboard/agent.py --gcs-address=x")
    assert ray_process_name(raylet) == "raylet"
    assert ray_process_name(f"{venv}/core/src/ray/gcs/gcs_server --log_dir=/tmp/raylet") == "gcs_server"
    assert ray_process_name("ray::ProxyActor.receive_asgi_messages") == "serve_proxy"
    assert ray_process_name("ray::ServeController.listen_for_change") == "serve_controller"
    assert ray_process_name("ray::DashboardAgent") == "dashboard_agent"
    assert ray_process_name(f"/v/bin/python -u {venv}/_private/log_monitor.py --x") == "log_monitor"
    assert ray_process_name("ray::ServeReplica:voxserve:LLM") is None  # reports through /stats
    driver = "/v/bin/python -m voxserve.cli serve --port 8123 --config o.yaml"
    assert ray_process_name(driver, 8123) == "serve_driver"
    assert ray_process_name(driver, 9000) is None  # someone else's server
    assert ray_process_name("/v/bin/voxserve serve", 8000) == "serve_driver"
    assert ray_process_name("/v/bin/python -m pytest tests/e2e/test_soak.py") is None
