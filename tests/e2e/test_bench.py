"""`voxserve bench` against the real server: report files, consistent numbers, SLO exit code,
and the gateway echo mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Server
from voxserve.cli import main as cli_main

pytestmark = pytest.mark.e2e


def _bench(server: Server, out: Path, *extra: str) -> int:
    return cli_main(["bench", "--url", f"{server.ws}/v1/realtime", "--api-key", server.api_key,
                     "--out", str(out), "--max-seconds", "600", *extra])


def test_short_load_run_writes_a_consistent_report(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = _bench(server, out, "--sessions", "2", "--turns", "2", "--think", "0.2")
    assert code == 0
    for name in ("report.json", "report.md", "ttfa_cdf.png", "ttfa_vs_concurrency.png", "stages.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    turns = report["turns"]
    assert len(turns) == 4 and all(t["status"] == "completed" for t in turns), turns
    for t in turns:
        assert t["ttfa_ms"] is not None and t["end_of_turn_ms"] is not None
        assert t["ttfa_ms"] >= t["end_of_turn_ms"] > 0  # the answer cannot precede the commit
        assert t["server"] and t["server"]["ttfa_ms"] > 0
    level = report["summary"]["levels"][0]
    p = level["ttfa_ms"]
    assert p["n"] == 4 and p["p50"] <= p["p90"] <= p["p95"] <= p["p99"]
    assert "| default | 2 | 4 |" in (out / "report.md").read_text()


def test_slo_breach_fails_the_run_and_echo_mode_reports_rtt(server: Server, tmp_path: Path) -> None:
    code = _bench(server, tmp_path / "slo", "--sessions", "1", "--turns", "1",
                  "--slo-ttfa-p95-ms", "1")
    assert code == 1
    report = json.loads((tmp_path / "slo" / "report.json").read_text())
    assert report["slo"]["ok"] is False and report["slo"]["measured_ms"] > 1
    code = _bench(server, tmp_path / "echo", "--echo", "1,4", "--echo-seconds", "1")
    assert code == 0
    echo = json.loads((tmp_path / "echo" / "report.json").read_text())["echo"]
    assert [row["sessions"] for row in echo] == [1, 4]
    assert all(row["rtt_ms"]["n"] > 10 and row["rtt_ms"]["p50"] > 0 for row in echo)
