"""The load client: concurrent realtime sessions, each a multi-turn conversation of recorded
speech streamed in real time, measured per turn from the client's side.

Per turn: TTFA (end of the user's speech in the sent stream -> first audible audio received),
the answer's leading silence, the end-of-turn delay (speech end -> `committed`), barge-in stop
latency (interrupting speech onset -> the cancelled `response.done`), errors by code and
timeouts; plus the server's own stage breakdown from the `voxserve.response.timing` extension.
Everything is bounded: sessions, turns and a wall-clock deadline; nothing runs unbounded.
`connect`, `speech_turn` and `tool_turn` are public so the soak (`bench/soak.py`) runs the same
turns.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import websockets

from voxserve.client import (
    RATE,
    event_text,
    first_audible_s,
    is_event,
    pcm16_samples,
    send_speech,
    speech_end_s,
    speech_start_s,
)
from voxserve.protocol.client_events import (
    ClientEvent,
    ConversationItemCreateEvent,
    ResponseCreateEvent,
    SessionUpdateEvent,
)
from voxserve.protocol.server_events import (
    AudioDeltaEvent,
    CommittedEvent,
    ErrorEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseTimingEvent,
)

TOOL = {"type": "function", "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}
TOOL_PROMPTS = ["What is the weather in Oslo?", "How warm is it in Lisbon right now?",
                "Is it raining in Tokyo today?"]
TAIL_SILENCE_S = 1.2  # silence streamed after each clip, as a microphone keeps sending


@dataclass
class Clip:
    name: str
    audio: np.ndarray  # float32 at 24 kHz
    speech_start_s: float
    speech_end_s: float


def make_clip(name: str, audio: np.ndarray) -> Clip:
    return Clip(name, audio, speech_start_s(audio), speech_end_s(audio))


@dataclass
class TurnRecord:
    config: str
    level: int  # concurrency level (sessions) the turn ran under
    session: int
    turn: int
    kind: str  # "speech" | "barge_in" | "tool"
    clip: str = ""
    status: str = ""  # completed / cancelled / failed / timeout / error
    ttfa_ms: float | None = None
    first_delta_ms: float | None = None
    leading_silence_ms: float | None = None
    end_of_turn_ms: float | None = None
    barge_in_stop_ms: float | None = None
    tool_calls: int = 0  # function calls the model made and the client answered
    server: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadSpec:
    url: str
    config: str = "default"
    api_key: str | None = None
    turns: int = 3
    think_s: float = 1.0  # mean think time between turns (exponential)
    barge_share: float = 0.0
    tool_share: float = 0.0
    tool_choice: str | None = None  # response.create's for tool turns ("required" forces a call)
    turn_timeout_s: float = 120.0
    # the session's answer length cap (None: the protocol's "inf"). Output is paced to real
    # time (limits.max_audio_lead_seconds), so an answer lasts as long as it speaks: a small
    # model that rambles for two minutes outlasts the turn timeout
    max_output_tokens: int | None = None
    seed: int = 0
    turn_detection: str = "server_vad"  # or semantic_vad (eagerness auto)


class Conn:
    """One socket with a reader task, so events carry their arrival times."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.queue.put_nowait((time.monotonic(), json.loads(raw)))
        except websockets.ConnectionClosed:
            pass

    async def send(self, event: ClientEvent) -> None:
        await self.ws.send(event_text(event))

    async def next(self, deadline: float) -> tuple[float, dict[str, Any]]:
        return await asyncio.wait_for(self.queue.get(), max(0.01, deadline - time.monotonic()))

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()


class Answer:
    """Follows one response's events: first delta, first audible audio, leading silence."""

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.first_delta: float | None = None
        self.first_audible: float | None = None
        self.silence_ms = 0.0
        self.done: dict[str, Any] | None = None

    def feed(self, at: float, ev: dict[str, Any]) -> None:
        if is_event(ev, ResponseCreatedEvent) and self.response_id is None:
            self.response_id = ev["response"]["id"]
        elif is_event(ev, AudioDeltaEvent) and ev.get("response_id") == self.response_id:
            if self.first_delta is None:
                self.first_delta = at
            if self.first_audible is None:
                pcm = pcm16_samples(ev["delta"])
                onset_s = first_audible_s(pcm)
                self.silence_ms += 1000 * (pcm.size / RATE if onset_s is None else onset_s)
                if onset_s is not None:
                    self.first_audible = at
        elif is_event(ev, ResponseDoneEvent) and ev["response"]["id"] == self.response_id:
            self.done = ev


CONNECT_ERRORS = (TimeoutError, OSError, websockets.InvalidStatus)


async def connect(spec: LoadSpec) -> Conn:
    """A configured session: server VAD, transcription, the timing extension, and the tool
    when the spec has tool turns. Raises one of CONNECT_ERRORS when the socket does not open, or
    `websockets.ConnectionClosed` when it closes at once."""
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    ws = await websockets.connect(spec.url, additional_headers=headers, max_size=None,
                                  open_timeout=60)
    conn = Conn(ws)
    try:
        await conn.send(SessionUpdateEvent(type="session.update", session={
            "type": "realtime", "voxserve": {"response_timing": True},
            "tools": [TOOL] if spec.tool_share > 0 else [],
            "max_output_tokens": spec.max_output_tokens or "inf",
            "audio": {"input": {"transcription": {"model": "whisper-1"},
                                "turn_detection": {"type": spec.turn_detection}}}}))
    except BaseException:
        await conn.close()
        raise
    return conn


async def run_session(spec: LoadSpec, clips: list[Clip], level: int, index: int,
                      records: list[TurnRecord], deadline: float,
                      on_turn: Callable[[], None] = lambda: None) -> None:
    rng = random.Random(f"{spec.seed}-{index}")
    try:
        conn = await connect(spec)
    except (*CONNECT_ERRORS, websockets.ConnectionClosed) as exc:
        records.append(TurnRecord(spec.config, level, index, 0, "connect", status="error",
                                  errors=[f"connect: {type(exc).__name__}"]))
        return
    try:
        for turn in range(spec.turns):
            if time.monotonic() > deadline:
                break
            roll = rng.random()
            kind = "tool" if roll < spec.tool_share else \
                "barge_in" if roll < spec.tool_share + spec.barge_share else "speech"
            record = TurnRecord(spec.config, level, index, turn, kind)
            turn_deadline = min(deadline, time.monotonic() + spec.turn_timeout_s)
            try:
                if kind == "tool":
                    await tool_turn(conn, rng, record, turn_deadline, spec.tool_choice)
                else:
                    await speech_turn(conn, clips, rng, record, turn_deadline, kind == "barge_in")
            except TimeoutError:
                record.status = "timeout"
            records.append(record)
            on_turn()
            await asyncio.sleep(rng.expovariate(1.0 / spec.think_s) if spec.think_s > 0 else 0)
    except websockets.ConnectionClosed as exc:
        records.append(TurnRecord(spec.config, level, index, -1, "session", status="error",
                                  errors=[f"connection closed: {exc.code}"]))
    finally:
        await conn.close()


async def collect(conn: Conn, answer: Answer, record: TurnRecord, deadline: float) -> None:
    """Feed events to `answer` until its response's timing event (sent after response.done)."""
    while True:
        at, ev = await conn.next(deadline)
        answer.feed(at, ev)
        if is_event(ev, ErrorEvent):
            record.errors.append(ev["error"].get("code") or "unknown")
        if is_event(ev, ResponseTimingEvent) and ev["response_id"] == answer.response_id:
            record.server = {k: v for k, v in ev.items() if k.endswith("_ms")}
            return


async def finish_turn(conn: Conn, answer: Answer, record: TurnRecord, deadline: float,
                      interrupter: asyncio.Task[None] | None, onset: float) -> None:
    """After the answer's `response.done`: its status, how long a barge-in took to stop it,
    its timing event, and the interrupting speech's own answer (a turn of its own: it must
    finish before the next turn starts)."""
    assert answer.done is not None
    record.status = answer.done["response"]["status"]
    if interrupter is not None and record.status == "cancelled":
        record.barge_in_stop_ms = (time.monotonic() - onset) * 1000
    await collect(conn, answer, record, deadline)
    if interrupter is not None:
        scratch = TurnRecord(record.config, record.level, record.session, record.turn, "speech")
        await collect(conn, Answer(), scratch, deadline)
        record.errors += scratch.errors


async def speech_turn(conn: Conn, clips: list[Clip], rng: random.Random, record: TurnRecord,
                      deadline: float, barge_in: bool) -> None:
    clip = rng.choice(clips)
    record.clip = clip.name
    t0 = time.monotonic()
    sender = asyncio.create_task(send_speech(conn.ws.send, clip.audio, TAIL_SILENCE_S, t0=t0))
    speech_end = t0 + clip.speech_end_s
    answer = Answer()
    interrupter: asyncio.Task[None] | None = None
    onset = 0.0  # the interrupting speech's onset, once there is one
    try:
        while answer.done is None:
            at, ev = await conn.next(deadline)
            answer.feed(at, ev)
            if is_event(ev, CommittedEvent) and record.end_of_turn_ms is None:
                record.end_of_turn_ms = (at - speech_end) * 1000
            elif is_event(ev, ErrorEvent):
                record.errors.append(ev["error"].get("code") or "unknown")
            if barge_in and interrupter is None and answer.first_delta is not None:
                # interrupt the answer as soon as it starts: speak another clip over it
                other = rng.choice(clips)
                await sender
                t1 = time.monotonic()
                onset = t1 + other.speech_start_s
                interrupter = asyncio.create_task(
                    send_speech(conn.ws.send, other.audio, TAIL_SILENCE_S, t0=t1))
        if answer.first_audible is not None:
            record.ttfa_ms = (answer.first_audible - speech_end) * 1000
            record.leading_silence_ms = answer.silence_ms
        if answer.first_delta is not None:
            record.first_delta_ms = (answer.first_delta - speech_end) * 1000
        await finish_turn(conn, answer, record, deadline, interrupter, onset)
    finally:
        sender.cancel()
        if interrupter is not None:
            await asyncio.gather(interrupter, return_exceptions=True)


async def tool_turn(conn: Conn, rng: random.Random, record: TurnRecord, deadline: float,
                    tool_choice: str | None = None) -> None:
    await conn.send(ConversationItemCreateEvent(type="conversation.item.create", item={
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": rng.choice(TOOL_PROMPTS)}]}))
    asked = time.monotonic()
    await conn.send(ResponseCreateEvent(type="response.create") if tool_choice is None else
                    ResponseCreateEvent(type="response.create",
                                        response={"tool_choice": tool_choice}))
    answer = Answer()
    await collect(conn, answer, record, deadline)
    assert answer.done is not None
    calls = [o for o in answer.done["response"]["output"] if o["type"] == "function_call"]
    record.tool_calls = len(calls)
    if calls:  # answer the call; the spoken reply is what the user waits for
        await conn.send(ConversationItemCreateEvent(type="conversation.item.create", item={
            "type": "function_call_output", "call_id": calls[0]["call_id"],
            "output": json.dumps({"temperature_c": rng.randint(-5, 30)})}))
        await conn.send(ResponseCreateEvent(type="response.create",
                                            response={"tool_choice": "none"}))
        answer = Answer()
        record.server = None
        await collect(conn, answer, record, deadline)
    assert answer.done is not None
    record.status = answer.done["response"]["status"]
    if answer.first_audible is not None:
        record.ttfa_ms = (answer.first_audible - asked) * 1000
        record.leading_silence_ms = answer.silence_ms
