"""Echo benchmark: the agent on a speakerphone, with server echo cancellation off and on.

    .venv/bin/python -m bench.aec --out bench-results/aec [--url ws://...] [--answers 10]

Without `--url` it starts `voxserve serve` on a free loopback port. Each trial opens a Voice Live
session, asks for a long spoken answer and streams the microphone of a simulated room
(bench/echo_sim.py: the answer played in real time and picked up again after 100-250 ms, gain
0.3-0.7, a reverberant tail) back in real time; the client stops playback on `speech_started`,
as the Voice Live samples do. Half the trials also have a recorded user start talking over the
answer 6-10 s into it (double talk). Per configuration:

- **self-interruptions**: answers with a `speech_started` while no user was talking;
- **double talk**: the user's speech detected (`speech_started` after their onset), and how long
  after the onset it came, on the microphone's clock;
- **ERLE** of AEC3 on each trial's recorded room (microphone and what the loudspeaker played,
  run offline through the same front end with the played signal as a client reference);
- **TTFA** of one spoken question per trial, asked over the echo of a short greeting.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from voxserve.audio.formats import AudioFormat
from voxserve.audio.front_end import FrontEnd, aec3
from voxserve.audio.resample import resample
from voxserve.bench.echo_sim import EchoRoom
from voxserve.bench.interruptions import LONG_ANSWER_CONTEXT, LONG_INSTRUCTIONS
from voxserve.bench.report import environment, pct
from voxserve.bench.server import LocalServer
from voxserve.client import RATE, pcm16_samples, read_wav, speech_end_s, speech_start_s

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
CHUNK = RATE // 50  # the microphone sends 20 ms frames
PCM = AudioFormat("pcm16", RATE)
# speech_started up to this long after a user's recording ends still counts as theirs
USER_TAIL_S = 1.0


@dataclass
class Room:
    delay_ms: float
    gain: float
    reverb_ms: float = 120.0
    seed: int = 0

    def build(self) -> EchoRoom:
        return EchoRoom(self.delay_ms, self.gain, self.reverb_ms, self.seed)


@dataclass
class Answer:
    """What one speakerphone answer did, on the microphone's clock (seconds since it started)."""

    speech_started_s: list[float] = field(default_factory=list)
    user_onset_s: float | None = None
    user_end_s: float | None = None
    first_audio_s: float | None = None
    played_s: float = 0.0
    status: str | None = None

    @property
    def self_interruptions(self) -> list[float]:
        """`speech_started` with no user talking."""
        def theirs(t: float) -> bool:
            return (self.user_onset_s is not None and self.user_end_s is not None
                    and self.user_onset_s - 0.2 <= t <= self.user_end_s + USER_TAIL_S)
        return [t for t in self.speech_started_s if not theirs(t)]

    @property
    def user_detected_after_s(self) -> float | None:
        if self.user_onset_s is None:
            return None
        onset = self.user_onset_s
        after = [t - onset for t in self.speech_started_s if t >= onset - 0.2]
        return min(after) if after else None


async def play_answer(send: Any, recv: Any, room: EchoRoom, *, user: np.ndarray | None = None,
                      user_after_s: float = 8.0, timeout_s: float = 240.0,
                      record: list[tuple[np.ndarray, np.ndarray]] | None = None) -> Answer:
    """Stream the room's microphone in real time until the answer asked for is done and has
    played out.

    `send(dict)` and `recv() -> dict` are the client's (any SDK or a raw socket). The user's
    recording, when given, starts once `user_after_s` of the answer has played."""
    out = Answer()
    sent = 0  # microphone samples sent: the clock of everything measured
    done = asyncio.Event()

    async def microphone() -> None:
        nonlocal sent
        t0 = time.monotonic()
        while not done.is_set():
            if user is not None and out.user_onset_s is None and room.played_s >= user_after_s:
                room.say(user)
                out.user_onset_s = sent / RATE + speech_start_s(user)
                out.user_end_s = sent / RATE + user.size / RATE
            frame = room.mic(CHUNK)
            if record is not None and room.last is not None:
                record.append(room.last)
            await send({"type": "input_audio_buffer.append",
                        "audio": base64.b64encode(PCM.encode(frame)).decode()})
            sent += CHUNK
            await asyncio.sleep(max(0.0, t0 + sent / RATE - time.monotonic()))

    def heard(event: dict[str, Any]) -> bool:
        """Handles one server event; True on the answer's `response.done`."""
        kind = event.get("type")
        if kind == "response.audio.delta":
            room.received(pcm16_samples(event["delta"]))
            if out.first_audio_s is None:
                out.first_audio_s = sent / RATE
        elif kind == "input_audio_buffer.speech_started":
            out.speech_started_s.append(sent / RATE)
            room.stop()  # the client stops playing, as the Voice Live samples do
        elif kind == "response.done" and out.status is None:
            out.status = event["response"]["status"]
            return True
        elif kind == "error":
            raise RuntimeError(f"server error: {event['error']}")
        return False

    async def speaker() -> None:
        while not heard(await recv()):
            pass
        while room.playing:  # the client plays out what it has, the microphone still open
            try:
                heard(await asyncio.wait_for(recv(), 0.05))
            except TimeoutError:
                pass

    mic = asyncio.create_task(microphone())
    try:
        await asyncio.wait_for(speaker(), timeout_s)
    finally:
        done.set()
        await mic
    out.played_s = room.played_s
    return out


def session_update(echo: bool, answer_turns: bool = True) -> dict[str, Any]:
    """A Voice Live session answering the long prompt, with AEC on or off."""
    return {"type": "session.update", "session": {
        "modalities": ["text", "audio"], "instructions": LONG_INSTRUCTIONS,
        "turn_detection": {"type": "server_vad", "create_response": answer_turns,
                           "interrupt_response": True},
        "input_audio_echo_cancellation": {"type": "server_echo_cancellation"} if echo else None}}


def long_question() -> list[dict[str, Any]]:
    """The conversation that makes the long answer (~20 s), and the request for it."""
    items = [{"type": "conversation.item.create", "item": {
        "type": "message", "role": role, "content": [{"type": kind, "text": text}]}}
        for role, kind, text in LONG_ANSWER_CONTEXT]
    return [*items, {"type": "response.create"}]


def offline_erle(record: list[tuple[np.ndarray, np.ndarray]], skip_s: float = 3.0) -> float | None:
    """AEC3's echo reduction on a recorded room, where only echo was heard (after `skip_s` of
    convergence, before any user): the microphone and the played signal as a client reference."""
    if not record:
        return None
    fe = FrontEnd(echo=aec3(), client_reference=True)
    mic = np.concatenate([m for m, _ in record])
    played = np.concatenate([p for _, p in record])
    out = fe.process(PCM.encode(np.stack([mic, played], axis=1).reshape(-1)), PCM)
    near = resample(mic, RATE, 16000)[:out.size]
    lo = int(16000 * skip_s)
    if near.size - lo < 16000:
        return None
    def db(x: np.ndarray) -> float:
        return float(10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-12))
    return db(near[lo:]) - db(out[lo:near.size])


async def _connected(url: str, api_key: str | None, echo: bool, answer_turns: bool) -> Any:
    """A Voice Live socket with the session set up, and its send / recv."""
    headers = {"api-key": api_key} if api_key else {}
    ws = await websockets.connect(url, additional_headers=headers, max_size=None)

    async def send(event: dict[str, Any]) -> None:
        await ws.send(json.dumps(event))

    async def recv() -> dict[str, Any]:
        return json.loads(await ws.recv())  # type: ignore[no-any-return]

    await send(session_update(echo, answer_turns))
    while (await recv())["type"] != "session.updated":
        pass
    return ws, send, recv


async def trial(url: str, api_key: str | None, echo: bool, room: Room, user: np.ndarray | None,
                user_after_s: float, question: np.ndarray) -> dict[str, Any]:
    # a spoken question over silence, in a session of its own: TTFA with AEC on or off
    ws, send, recv = await _connected(url, api_key, echo, answer_turns=True)
    try:
        simulated = room.build()
        simulated.say(question)
        spoken = await play_answer(send, recv, simulated, timeout_s=240)
    finally:
        await ws.close()
    ttfa = (spoken.first_audio_s - speech_end_s(question)
            if spoken.first_audio_s is not None else None)
    # the long answer on the speakerphone; speech only interrupts it (no answer to the echo)
    record: list[tuple[np.ndarray, np.ndarray]] = []
    ws, send, recv = await _connected(url, api_key, echo, answer_turns=False)
    try:
        for event in long_question():
            await send(event)
        answer = await play_answer(send, recv, room.build(), user=user,
                                   user_after_s=user_after_s, record=record)
    finally:
        await ws.close()
    return {"echo": echo, "room": asdict(room), "double_talk": user is not None,
            "self_interruptions": answer.self_interruptions,
            "speech_started_s": answer.speech_started_s, "user_onset_s": answer.user_onset_s,
            "user_detected_after_s": answer.user_detected_after_s,
            "answer_played_s": round(answer.played_s, 2), "status": answer.status,
            "ttfa_s": None if ttfa is None else round(ttfa, 3),
            "erle_db": offline_erle(record)}


def _trials(n: int, seed: int) -> list[tuple[Room, bool, float]]:
    """The same rooms for both configurations: delay, gain, double talk and when."""
    rng = random.Random(seed)
    return [(Room(rng.uniform(100, 250), rng.uniform(0.3, 0.7), 120.0, rng.randrange(1 << 16)),
             i % 2 == 1, rng.uniform(6.0, 10.0)) for i in range(n)]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for echo in (False, True):
        mine = [r for r in rows if r["echo"] is echo]
        talk = [r for r in mine if r["double_talk"]]
        detected = [1000 * r["user_detected_after_s"] for r in talk
                    if r["user_detected_after_s"] is not None]
        erle = [r["erle_db"] for r in mine if r["erle_db"] is not None]
        ttfa = [1000 * r["ttfa_s"] for r in mine if r["ttfa_s"] is not None]
        out["aec_on" if echo else "aec_off"] = {
            "answers": len(mine),
            "self_interrupted": sum(bool(r["self_interruptions"]) for r in mine),
            "double_talk_trials": len(talk), "double_talk_detected": len(detected),
            "detected_within_500ms": sum(d <= 500 for d in detected),
            "detection_after_ms": pct(detected), "erle_db": pct(erle), "ttfa_ms": pct(ttfa)}
    return out


def write_report(path: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    env = environment()
    def fmt(p: dict[str, Any], unit: str) -> str:
        if not p or p.get("n", 0) == 0:
            return "–"
        return f"{p['p50']:.0f}{unit} / {p['p95']:.0f}{unit} (n={p['n']})"
    lines = ["# Echo cancellation on a simulated speakerphone", "",
             "`python -m bench.aec` (bench/aec.py): each answer in its own Voice Live session, "
             "the room's echo path 100-250 ms, gain 0.3-0.7, a 120 ms reverberant tail; half the "
             "answers with a recorded user talking over them. One run on the 2-core box.", "",
             "| | answers | self-interrupted | double talk detected | within 500 ms | "
             "detected after, p50 / p95 | ERLE (offline), p50 / p95 | TTFA, p50 / p95 |",
             "|---|---|---|---|---|---|---|---|"]
    for key, label in (("aec_off", "AEC off"), ("aec_on", "AEC on")):
        s = summary[key]
        lines.append(f"| {label} | {s['answers']} | {s['self_interrupted']} | "
                     f"{s['double_talk_detected']} of {s['double_talk_trials']} | "
                     f"{s['detected_within_500ms']} | {fmt(s['detection_after_ms'], ' ms')}"
                     f" | {fmt(s['erle_db'], ' dB')} | {fmt(s['ttfa_ms'], ' ms')} |")
    lines += ["", "Self-interrupted: answers with a `speech_started` while no user was talking "
              "(the client then stopped playback). Detected after: the user's speech onset in "
              "the sent stream to the `speech_started` received, on the microphone's clock. "
              "ERLE: AEC3 run offline over each answer's recorded microphone with what the "
              "loudspeaker played as the reference, after 3 s, before the user. TTFA: a spoken "
              "question asked first in each session.", "",
              f"Machine: {env['cpus']} CPUs, {env['platform']}, Python {env['python']}."]
    path.write_text("\n".join(lines) + "\n")


async def run(url: str, api_key: str | None, answers: int, seed: int) -> list[dict[str, Any]]:
    clips = sorted(DATA.glob("sense_and_sensibility_*.wav"))
    user = read_wav(clips[-1], RATE)[:int(3 * RATE)]
    question = read_wav(clips[0], RATE)
    rows = []
    for i, (room, talk, after) in enumerate(_trials(answers, seed)):
        for echo in (False, True):
            row = await trial(url, api_key, echo, room, user if talk else None, after, question)
            rows.append(row)
            print(f"[aec] {i + 1}/{answers} aec={'on' if echo else 'off'} "
                  f"delay={room.delay_ms:.0f}ms gain={room.gain:.2f} talk={talk} "
                  f"self_interruptions={len(row['self_interruptions'])} "
                  f"detected={row['user_detected_after_s']} erle={row['erle_db']}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server's Voice Live URL (default: start one)")
    parser.add_argument("--api-key")
    parser.add_argument("--answers", type=int, default=10, help="rooms; each runs AEC off and on")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench-results/aec"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    server = None if args.url else LocalServer(args.out / "server.log")
    url = args.url or server.url.replace("/v1/realtime", VOICE_LIVE_PATH)  # type: ignore[union-attr]
    try:
        rows = asyncio.run(run(url, args.api_key, args.answers, args.seed))
    finally:
        if server is not None:
            server.stop()
    summary = summarise(rows)
    (args.out / "aec.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    write_report(args.out / "aec-report.md", rows, summary)
    print(json.dumps(summary, indent=1))
    return 0


VOICE_LIVE_PATH = "/voice-live/realtime?api-version=2025-10-01&model=gpt-realtime"

if __name__ == "__main__":
    raise SystemExit(main())
