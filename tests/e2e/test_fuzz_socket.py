"""Fuzzing through the real stack: a few hundred random client frames over a real WebSocket to
the real server (the strategies of tests/fuzz.py), then a text turn still completes.

A second connection, opened first and left alone, must see no error and still answer its own
turn. Every event either connection receives must validate against the official SDK models.
The server handles a socket's frames in order, so a last refused retrieve (its `event_id`
echoed) marks the point by which every fuzz frame has been answered.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conformance import check_event
from tests.e2e.conftest import Server
from tests.fuzz import cases, error_problems, examples
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.e2e

FRAMES = 60  # per case; examples(2) cases per dialect
PATHS = {Dialect.GA: ("/v1/realtime?model=gpt-realtime", {}),
         Dialect.BETA: ("/v1/realtime?model=gpt-realtime", {"OpenAI-Beta": "realtime=v1"}),
         Dialect.VOICE_LIVE: ("/voice-live/realtime?api-version=2025-10-01&model=gpt-realtime", {})}
# Text only, and no VAD: a new turn from leftover fuzz audio would cancel the one checked.
_TEXT_ONLY = {Dialect.GA: {"type": "realtime", "output_modalities": ["text"],
                           "audio": {"input": {"turn_detection": None}},
                           "instructions": "Answer in one short sentence."},
              Dialect.BETA: {"modalities": ["text"], "turn_detection": None,
                             "instructions": "Answer in one short sentence."},
              Dialect.VOICE_LIVE: {"modalities": ["text"], "turn_detection": None,
                                   "instructions": "Answer in one short sentence."}}


class Connection:
    """A socket and everything it has received, read by a background task."""

    def __init__(self, ws: Any, dialect: Dialect) -> None:
        self.ws, self.dialect = ws, dialect
        self.received: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for text in self.ws:
            self.received.append(json.loads(text))
            self.arrived.set()

    async def until(self, match: Any, timeout: float, after: int = 0) -> dict[str, Any]:
        """The first event from index `after` on that `match`es."""
        async def wait() -> dict[str, Any]:
            seen = after
            while True:
                for event in self.received[seen:]:
                    if match(event):
                        return event
                seen = len(self.received)
                self.arrived.clear()
                await self.arrived.wait()
        return await asyncio.wait_for(wait(), timeout)

    async def text_turn(self, cancel: bool) -> dict[str, Any]:
        """Go text-only and ask something (cancelling first what may run): the response.done."""
        start = len(self.received)
        for event in ([{"type": "input_audio_buffer.clear"},
                       {"type": "output_audio_buffer.clear"}] if cancel else []) + [
                {"type": "session.update", "session": _TEXT_ONLY[self.dialect]},
                {"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "Say hello."}]}},
                {"type": "response.create", "event_id": "evt_final",
                 "response": {"metadata": {"turn": "final"}}}]:
            await self.ws.send(json.dumps(event))
        # a fuzzed response (a VAD turn still being transcribed) may start and be cancelled
        # meanwhile; ours is the one with the metadata
        return await self.until(lambda e: e.get("error", {}).get("event_id") == "evt_final" or (
            e["type"] == "response.done"
            and (e["response"].get("metadata") or {}).get("turn") == "final"), 120, start)


async def _connect(server: Server, dialect: Dialect) -> Connection:
    path, headers = PATHS[dialect]
    ws = await websockets.connect(f"{server.ws}{path}", max_size=None,
                                  additional_headers={"api-key": server.api_key, **headers})
    conn = Connection(ws, dialect)
    await conn.until(lambda e: e["type"] == "session.created", 30)
    return conn


async def _scenario(server: Server, data: st.DataObject, dialect: Dialect) -> None:
    other = await _connect(server, dialect)
    conn = await _connect(server, dialect)
    try:
        invalid = 0
        for _ in range(FRAMES):
            case = data.draw(cases(dialect, conn.received))
            if isinstance(case, float):
                await asyncio.sleep(case)
                continue
            invalid += case.invalid
            await conn.ws.send(case.frame)
        await conn.ws.send(json.dumps({"type": "conversation.item.retrieve",
                                       "item_id": "item_marker", "event_id": "evt_marker"}))
        await conn.until(lambda e: e["type"] == "error"
                         and e["error"].get("event_id") == "evt_marker", 60)
        errors = sum(e["type"] == "error" for e in conn.received)
        assert errors > invalid, f"{errors - 1} errors for {invalid} frames that must be refused"
        if any(e["type"] == "transcription_session.updated" for e in conn.received):
            pass  # beta's transcription-only session never responds again; it is still open
        else:
            done = await conn.text_turn(cancel=True)
            assert done["response"]["status"] == "completed", done
        other_done = await other.text_turn(cancel=False)
        assert other_done["response"]["status"] == "completed", other_done
        assert not conn.reader.done() and not other.reader.done(), "a connection closed"
        problems = error_problems(conn.received)
        assert not problems, problems
        assert not any(e["type"] == "error" for e in other.received), \
            [e for e in other.received if e["type"] == "error"]
        for event in conn.received + other.received:
            check_event(event, dialect)
    finally:
        for c in (conn, other):
            await c.ws.close()
            c.reader.cancel()


@pytest.mark.parametrize("dialect", [Dialect.GA, Dialect.BETA, Dialect.VOICE_LIVE])
def test_random_frames_over_a_socket_leave_both_sessions_working(server: Server,
                                                                 dialect: Dialect) -> None:
    @settings(max_examples=examples(2))
    @given(st.data())
    def run(data: st.DataObject) -> None:
        asyncio.run(_scenario(server, data, dialect))
    run()
