"""The limits over the real server (docs/limits.md): floods and audio faster than real time are
refused with `rate_limited` and the session still answers, an oversized frame is refused by
the session (not by a dropped socket), a full server answers 503 before the upgrade, and a
client that stops reading is closed while another session is served."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests import long_answer
from tests.e2e.conftest import MAX_SESSIONS, Server

pytestmark = pytest.mark.e2e

WAIT_S = 120.0
_TEXT_ONLY = {"type": "session.update", "session": {
    "type": "realtime", "output_modalities": ["text"], "instructions": "Answer in one word.",
    "audio": {"input": {"turn_detection": None}}}}


def _url(server: Server) -> str:
    return f"{server.ws}/v1/realtime?model=gpt-realtime"


def _connect(server: Server, **kwargs: Any) -> Any:
    return websockets.connect(_url(server), additional_headers={"api-key": server.api_key},
                              max_size=None, **kwargs)


def _stats(server: Server) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.http}/stats", timeout=30) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


async def _until_stats(server: Server, ok: Any, timeout: float = WAIT_S) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while not ok(stats := await asyncio.to_thread(_stats, server)):
            await asyncio.sleep(0.5)
    return stats


async def _next(ws: Any, kinds: set[str], seen: list[dict[str, Any]] | None = None,
                timeout: float = WAIT_S) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            if seen is not None:
                seen.append(event)
            if event["type"] in kinds:
                return event


async def _answers(ws: Any) -> None:
    """A text turn completes on this socket."""
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "Say yes."}]}}))
    await ws.send(json.dumps({"type": "response.create"}))
    done = await _next(ws, {"response.done"})
    assert done["response"]["status"] == "completed", done


async def test_floods_are_refused_and_the_session_still_answers(server: Server) -> None:
    async with _connect(server) as ws:
        await _next(ws, {"session.created"})
        await ws.send(json.dumps(_TEXT_ONLY))
        await _next(ws, {"session.updated"})
        # 90 s of audio at once: past the 60 s burst, the rest of it is refused
        second = base64.b64encode(bytes(48000)).decode()
        for _ in range(90):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": second}))
        seen: list[dict[str, Any]] = []
        refusal = await _next(ws, {"error"}, seen)
        assert refusal["error"]["code"] == "rate_limited", refusal
        assert refusal["error"]["param"] == "audio"
        assert "limits.max_audio_speed" in refusal["error"]["message"]
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        await _next(ws, {"input_audio_buffer.cleared"})
        # 3000 tiny events as fast as the socket takes them: past 500 at once and 250/s
        for _ in range(3000):
            await ws.send('{"type":"input_audio_buffer.clear"}')
        flood = await _next(ws, {"error"})
        assert flood["error"]["code"] == "rate_limited", flood
        assert "limits.max_events_per_second" in flood["error"]["message"]
        await asyncio.sleep(2.5)  # let the bucket refill (a client that slowed down)
        # a frame over limits.max_message_bytes: the session answers it, the socket stays
        await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                  "audio": "A" * (15 * 1024 * 1024 + 16)}))
        big = await _next(ws, {"error"}, timeout=WAIT_S)
        while big["error"]["code"] == "rate_limited":  # a late count of the flood
            big = await _next(ws, {"error"})
        assert big["error"]["code"] == "message_too_large", big
        await _answers(ws)


async def test_a_full_server_refuses_new_sockets_with_503(server: Server) -> None:
    await _until_stats(server, lambda s: s.get("server_sessions") == 0)
    open_sockets = []
    try:
        for _ in range(MAX_SESSIONS):
            ws = await _connect(server)
            open_sockets.append(ws)
            await _next(ws, {"session.created"})
        with pytest.raises(InvalidStatus) as refused:
            async with _connect(server):
                pass
        response = refused.value.response
        assert response.status_code == 503
        assert "limits.max_sessions" in (response.body or b"").decode()
        await open_sockets.pop().close()
        await _until_stats(server, lambda s: s["server_sessions"] == MAX_SESSIONS - 1)
        async with _connect(server) as ws:  # room again
            await _next(ws, {"session.created"})
    finally:
        for ws in open_sockets:
            await ws.close()


async def test_a_client_that_stops_reading_is_closed_and_others_are_served(
        server: Server) -> None:
    before = (await _until_stats(server, lambda s: s["sessions"] == 0))["sessions"]
    # max_queue=1: once one frame waits unread, the client stops reading its TCP socket, so it
    # answers no more pings either (a frozen tab, a stuck process)
    stuck = await _connect(server, max_queue=1)
    try:
        await stuck.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "instructions": long_answer.INSTRUCTIONS,
            "audio": {"input": {"turn_detection": None}}}}))
        for item in long_answer.conversation_items():
            await stuck.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await stuck.send(json.dumps({"type": "response.create"}))
        await _until_stats(server, lambda s: s["sessions"] == before + 1)
        async with _connect(server) as other:  # served while the stuck one talks to no one
            await _next(other, {"session.created"})
            await other.send(json.dumps(_TEXT_ONLY))
            await _answers(other)
        # the stuck session is closed by the server side, without the client doing anything
        await _until_stats(server, lambda s: s["sessions"] == before, timeout=150)
    finally:
        stuck.transport.abort()
