"""One real server for the e2e package: `voxserve serve` in a subprocess (Ray, Serve, real models).

Started once for the package and waited on through `/health` (no sleeps); stopped with SIGINT
when the package's last test is done, which must leave no Ray processes behind. Package scope,
not session: tests/tls starts its own server with TLS, and only one Ray may run at a time. The
server requires an API key so every test also exercises authentication. `start_server` and
`stop_server` are shared with tests/tls.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.otlp_receiver import OtlpReceiver
from voxserve.bench.knowledge_cases import ABOUT as KNOWLEDGE_ABOUT
from voxserve.bench.knowledge_cases import DOCS as KNOWLEDGE_DOCS

API_KEY = "test-key-123"
# Browsers on this page may connect; other Origins are refused (tests/e2e/test_auth.py). Clients
# that send no Origin (every other test) are not affected.
ALLOWED_ORIGIN = "https://app.voxserve.test"
# A server-wide session limit, so the full-server test can fill it (tests/e2e/test_limits.py);
# no other test holds more than a few sessions at once.
MAX_SESSIONS = 12
STARTUP_TIMEOUT_S = 900  # first start assembles 500 MB of weights on a busy 2-core box


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    api_key: str
    log: Path
    metrics_port: int
    traces: OtlpReceiver

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_processes() -> list[str]:
    out = subprocess.run(["pgrep", "-af", "raylet|gcs_server|ray::"], capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def start_server(args: list[str], log: Path, health_url: str, env: dict[str, str] | None = None,
                 tls: ssl.SSLContext | None = None) -> subprocess.Popen[bytes]:
    """`voxserve serve ARGS` in a subprocess logging to LOG, returned once HEALTH_URL answers 200
    (over TLS with TLS as the client context, when given). Fails the test if Ray is already
    running (the checks after the stop would be meaningless), if the server exits or if it is
    not healthy within STARTUP_TIMEOUT_S."""
    if _ray_processes():
        pytest.fail("Ray processes are already running on this machine; the e2e tests start "
                    f"their own Ray and check it is gone afterwards: {_ray_processes()[:3]}")
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "voxserve.cli", "serve", *args],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode} during start:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(health_url, timeout=5, context=tls) as r:
                if r.status == 200:
                    return proc
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server not healthy after {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")
        time.sleep(1.0)


def stop_server(proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGINT, as a user's Ctrl-C: the server must exit 0 and leave no Ray processes behind."""
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"server did not stop within 180 s of SIGINT:\n{log.read_text()[-3000:]}")
    leftovers = _ray_processes()
    assert code == 0, f"server exit code {code}:\n{log.read_text()[-3000:]}"
    assert not leftovers, f"Ray processes left behind after SIGINT: {leftovers}"


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server, tracing every turn to an in-process OTLP receiver."""
    root = tmp_path_factory.mktemp("server")
    config = root / "options.yaml"
    metrics_port = free_port()
    # Every answer greedy and seeded, whatever a test's client asks: what the model says to a
    # given conversation is then fixed, and the tests that need a long answer use one whose
    # greedy answer was checked (tests/long_answer.py) instead of hoping a sample runs long.
    config.write_text(f"server:\n  api_keys: [{API_KEY}]\n  metrics_port: {metrics_port}\n"
                      f"  allowed_origins: ['{ALLOWED_ORIGIN}']\n"
                      f"limits:\n  max_sessions: {MAX_SESSIONS}\n"
                      "llm:\n  seed: 1234\n  temperature: 0.0\n"
                      # VoiceRAG over the benchmark's documents, offered only to sessions that
                      # ask (tests/e2e/test_knowledge.py): the other tests' answers stay as they were
                      f"knowledge:\n  documents: {KNOWLEDGE_DOCS}\n  about: \"{KNOWLEDGE_ABOUT}\"\n"
                      f"  index: {root / 'knowledge.sqlite'}\n  on_by_default: false\n")
    log = root / "server.log"
    port = free_port()
    traces = OtlpReceiver().start()
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{traces.port}",
           "OTEL_BSP_SCHEDULE_DELAY": "200"}
    srv = Server("127.0.0.1", port, API_KEY, log, metrics_port, traces)
    try:
        proc = start_server(["--port", str(port), "--config", str(config)], log,
                            f"{srv.http}/health", env=env)
        yield srv
        stop_server(proc, log)
    finally:
        traces.stop()


@pytest.fixture(scope="session")
def whisper():  # type: ignore[no-untyped-def]
    """A local Whisper engine to check what the agent's audio actually says."""
    from voxserve.models.weights import whisper_base_dir
    from voxserve.models.whisper_asr import FasterWhisperEngine

    return FasterWhisperEngine(str(whisper_base_dir()))
