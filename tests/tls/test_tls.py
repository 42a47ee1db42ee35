"""TLS on the Serve proxy itself, over the real server: the `openai` npm package's realtime
clients complete a response over wss:// trusting a self-signed certificate through
NODE_EXTRA_CA_CERTS (and refuse it without), the Python `websockets` client opens a session,
plain ws:// to the same port gets no WebSocket, and a wrong key is refused with 401 before the
upgrade."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidMessage, InvalidStatus

from tests.tls.conftest import TlsServer

pytestmark = pytest.mark.e2e

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SCRIPT = JS_DIR / "realtime_tls.mjs"


def _node_missing() -> str | None:
    """Why the npm client test cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not on PATH (install Node 20+; scripts/setup then installs tests/js)"
    for package in ("openai", "ws"):
        if not (JS_DIR / "node_modules" / package / "package.json").is_file():
            return (f"tests/js/node_modules/{package} is missing: run scripts/setup "
                    "(or `npm ci --prefix tests/js`)")
    return None


def _url(server: TlsServer, scheme: str | None = None) -> str:
    base = server.wss if scheme is None else f"{scheme}://{server.host}:{server.port}"
    return f"{base}/v1/realtime?model=gpt-realtime"


def _node_client(server: TlsServer, client: str, trust: bool) -> subprocess.CompletedProcess[str]:
    """tests/js/realtime_tls.mjs against SERVER, trusting its certificate only when TRUST."""
    if (reason := _node_missing()) is not None:
        pytest.skip(reason)
    env = {**os.environ, "OPENAI_API_KEY": server.api_key}
    # verification stays on whatever the caller's environment says
    for name in ("NODE_TLS_REJECT_UNAUTHORIZED", "NODE_EXTRA_CA_CERTS", "NODE_OPTIONS"):
        env.pop(name, None)
    if trust:
        env["NODE_EXTRA_CA_CERTS"] = str(server.certfile)
    return subprocess.run(["node", str(SCRIPT), "--client", client, f"{server.https}/v1"],
                          capture_output=True, text=True, env=env, timeout=180)


@pytest.mark.parametrize("client", ["websocket", "ws"])
def test_the_openai_npm_client_completes_a_response_over_wss(tls_server: TlsServer,
                                                            client: str) -> None:
    done = _node_client(tls_server, client, trust=True)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}\n{done.stdout}"
    lines: list[dict[str, Any]] = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["url"] == f"wss://127.0.0.1:{tls_server.port}/v1/realtime?model=gpt-realtime"
    types = [line.get("type") for line in lines[1:]]
    assert types[0] == "session.created", types
    assert "session.updated" in types
    updated = next(line for line in lines if line.get("type") == "session.updated")
    assert updated["output_modalities"] == ["text"]
    assert types[-1] == "response.done" and lines[-1]["status"] == "completed", lines[-1]
    text = "".join(line["delta"] for line in lines if line.get("type") == "response.output_text.delta")
    # greedy and seeded (tests/tls/conftest.py), so the answer is fixed: this one names Paris
    assert "paris" in text.lower(), f"output text {text!r} in {types}"


def test_the_npm_client_refuses_the_certificate_without_node_extra_ca_certs(
        tls_server: TlsServer) -> None:
    # what makes the test above pass is the trusted certificate, not a lax client
    done = _node_client(tls_server, "websocket", trust=False)
    assert done.returncode == 1 and "self-signed certificate" in done.stderr, done.stderr
    assert '"session.created"' not in done.stdout


async def test_the_python_websockets_client_opens_a_session_over_wss(tls_server: TlsServer) -> None:
    async with websockets.connect(_url(tls_server), ssl=tls_server.client_context(),
                                  additional_headers={"api-key": tls_server.api_key}) as ws:
        event = json.loads(await asyncio.wait_for(ws.recv(), 60))
    assert event["type"] == "session.created", event


async def test_a_client_trusting_only_the_usual_cas_refuses_the_certificate(
        tls_server: TlsServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate"):
        async with websockets.connect(_url(tls_server), ssl=ssl.create_default_context(),
                                      additional_headers={"api-key": tls_server.api_key}):
            pass


async def test_plain_ws_to_the_tls_port_gets_no_websocket(tls_server: TlsServer) -> None:
    # the TLS server reads the plaintext request as a broken handshake and drops the
    # connection: the client gets no HTTP response at all, let alone an upgrade (a refused
    # connection, a server not listening, would raise something else and fail this test)
    with pytest.raises(InvalidMessage) as info:
        async with websockets.connect(_url(tls_server, "ws"), open_timeout=30,
                                      additional_headers={"api-key": tls_server.api_key}):
            pass
    assert isinstance(info.value.__cause__, EOFError), repr(info.value.__cause__)


async def test_a_wrong_key_over_tls_is_refused_before_the_upgrade(tls_server: TlsServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(_url(tls_server), ssl=tls_server.client_context(),
                                      additional_headers={"api-key": "wrong"}):
            pass
    response = info.value.response
    assert response.status_code == 401
    assert (response.body or b"").decode() == "invalid API key"
