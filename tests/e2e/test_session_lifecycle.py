"""A session's life at its edges, over a real socket: hostile input, and a client that leaves
while model work is in flight."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import websockets

from tests.e2e.conftest import Server
from tests.speech import clip
from voxserve.client import pcm16_frames, read_wav

pytestmark = pytest.mark.e2e


def _stats(server: Server) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.http}/stats", timeout=30) as r:
        return json.loads(r.read())["deployments"]  # type: ignore[no-any-return]


async def _until_stats(server: Server, ready: Callable[[dict[str, Any]], bool],
                       what: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the stages' counters until `ready` holds (they are only readable by polling)."""
    deadline = time.monotonic() + timeout
    while not ready(stats := _stats(server)):
        assert time.monotonic() < deadline, f"{what}: {stats}"
        await asyncio.sleep(0.05)
    return stats


async def _next(ws: Any, kind: str, timeout: float = 60.0) -> dict[str, Any]:
    async def wait() -> dict[str, Any]:
        while True:
            ev = json.loads(await ws.recv())
            if ev["type"] == kind:
                return ev  # type: ignore[no-any-return]
    return await asyncio.wait_for(wait(), timeout)


async def test_hostile_messages_get_errors_and_the_session_goes_on(server: Server) -> None:
    url = f"{server.ws}/v1/realtime?model=gpt-realtime"
    async with websockets.connect(url, additional_headers={"api-key": server.api_key},
                                  max_size=None) as ws:
        await _next(ws, "session.created")
        hostile: list[str | bytes] = [
            "[" * 5000 + "]" * 5000,  # a RecursionError in a naive parser
            '{"type": "session.update", "session": ' * 3000 + "{}" + "}" * 3000,
            b"\xff\xfe binary",
            # nothing else in it, so nothing applies: an error and no session.updated
            json.dumps({"type": "session.update", "session": {"instructions": "x" * 200_000}}),
            '{"type": "response.cancel", "event_id": 1e400}',
        ]
        for message in hostile:
            await ws.send(message)
            error = await _next(ws, "error")
            assert error["error"]["message"], error
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "instructions": "still here"}}))
        updated = await _next(ws, "session.updated")
        assert updated["session"]["instructions"] == "still here"


async def test_disconnect_cancels_the_transcription_in_the_asr_replica(server: Server) -> None:
    """A client that commits a turn and leaves at once: its decode is cancelled on the ASR
    replica, not finished for nobody."""
    wav, _ = clip("0880")
    speech = read_wav(wav)
    frames = pcm16_frames(np.concatenate([speech, speech]), 0.2, frame_ms=200)  # ~6 s: a long decode
    stats = _stats(server)
    before, completed = stats["asr"]["cancelled"], stats["asr"]["completed"]
    url = f"{server.ws}/v1/realtime?model=gpt-realtime"
    async with websockets.connect(url, additional_headers={"api-key": server.api_key}) as ws:
        await _next(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "audio": {"input": {"turn_detection": None,
                                                    "transcription": {"model": "whisper-1"}}}}}))
        await _next(ws, "session.updated")
        for frame in frames:
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": frame}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await _next(ws, "input_audio_buffer.committed")
        # leave once the replica is decoding (a cancel that lands while the request is still
        # routed never reaches it, and would prove nothing)
        await _until_stats(server, lambda s: s["asr"]["running"] >= 1 or s["asr"]["completed"]
                           > completed, "the ASR replica never started the decode")
        assert _stats(server)["asr"]["completed"] == completed, "the decode finished too soon"
    # the socket is closed: the ingress cancels the transcription and the call behind it
    after = await _until_stats(server, lambda s: s["asr"]["cancelled"] > before,
                               "the ASR replica saw no cancellation")
    assert after["asr"]["cancelled"] == before + 1
    assert after["asr"]["completed"] == completed  # dropped, not finished for nobody
