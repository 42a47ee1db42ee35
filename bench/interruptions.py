"""Barge-in and false-interruption benchmark against a real server.

    .venv/bin/python -m bench.interruptions --out bench-results/interruptions [--url ws://...]

Without `--url` it starts `voxserve serve` on a free loopback port (the default CPU pipeline).
Each trial opens a session, asks for a long spoken answer and, 0.3-1.5 s after its first audio,
streams a recording over it in real time:

- **Barge-ins** (`--barge-ins`, 30): the start of a LibriVox clip. Times from the user's speech
  onset in the sent stream (the frame where the clip's speech starts) to: `speech_started`
  received, the last audio delta of the interrupted answer received, the ingress's cancel decision,
  and the cancellation landing in the LLM and TTS replicas. The server-side times come from
  `/stats` (wall clock of the same host; one replica per stage, the default).
- **Backchannels and noise** (`--false-trials`, 3 rounds of each sound): a recorded "oh", the
  synthetic "mhm", "yeah", "okay" and "uh-huh" (espeak-ng, when installed), and a 300 ms noise
  burst. Counted: how many were heard as speech, how many cancelled the answer, and whether the
  answer resumed (audio of the same response after the burst).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets
from tqdm import tqdm

from voxserve.bench.report import environment, pct
from voxserve.bench.server import LocalServer
from voxserve.client import (
    FRAME_MS,
    RATE,
    event_text,
    is_event,
    read_wav,
    send_speech,
    speech_start_s,
)
from voxserve.protocol.client_events import (
    ConversationItemCreateEvent,
    ResponseCancelEvent,
    ResponseCreateEvent,
    SessionUpdateEvent,
)
from voxserve.protocol.server_events import (
    AudioDeltaEvent,
    ResponseDoneEvent,
    SpeechStartedEvent,
    SpeechStoppedEvent,
)

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
LONG_PROMPT = "Count from one to one hundred, saying every number in words."
LONG_INSTRUCTIONS = ("You count aloud when asked, saying every number as a word. You never stop "
                     "before the last number.")
# A long answer by construction: cold, the greedy model answers the counting prompt in a line;
# after this example it counts to forty (~20 s of speech; checked in tests/long_answer.py).
LONG_ANSWER_CONTEXT = (("user", "input_text", "Count from one to five, saying every number in words."),
                       ("assistant", "output_text", "One, two, three, four, five."),
                       ("user", "input_text", "Count from one to forty, saying every number in words."))


@dataclass
class Trial:
    kind: str  # barge_in | the backchannel's name
    onset_wall: float = 0.0
    speech_started: float | None = None
    last_audio: float | None = None
    done: float | None = None
    status: str = ""
    reason: str | None = None
    resumed: bool = False
    decision: float | None = None
    llm_cancel: float | None = None
    tts_cancel: float | None = None
    trail: list[str] = field(default_factory=list)

    def ms(self, a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round((b - a) * 1000, 1)


def backchannels() -> dict[str, np.ndarray]:
    sounds = {"oh (recorded)": read_wav(DATA / "backchannel" / "oh-allison.wav", RATE)}
    espeak = shutil.which("espeak-ng")
    if espeak:
        with tempfile.TemporaryDirectory() as tmp:
            for word in ("mhm", "yeah", "okay", "uh-huh"):
                wav = Path(tmp) / f"{word}.wav"
                subprocess.run([espeak, "-v", "en-us", "-w", str(wav), word], check=True)
                sounds[f"{word} (espeak)"] = read_wav(wav, RATE)
    rng = np.random.default_rng(3)
    sounds["noise burst 300 ms"] = (rng.standard_normal(int(0.3 * RATE)) * 0.05).astype(np.float32)
    return sounds


def _stats(http: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{http}/stats", timeout=30) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


async def trial(url: str, api_key: str | None, kind: str, audio: np.ndarray,
                rng: random.Random, timeout_s: float = 120) -> Trial:
    t = Trial(kind)
    headers = {"api-key": api_key} if api_key else {}
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        async def recv() -> dict[str, Any]:
            ev = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
            t.trail.append(ev["type"])
            return ev  # type: ignore[no-any-return]

        await ws.send(event_text(SessionUpdateEvent(type="session.update", session={
            "type": "realtime", "audio": {"input": {"turn_detection": {
                "type": "server_vad", "create_response": False}}}})))
        await ws.send(event_text(ConversationItemCreateEvent(
            type="conversation.item.create", item={
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": LONG_PROMPT}]})))
        await ws.send(event_text(ResponseCreateEvent(
            type="response.create", response={"instructions": LONG_INSTRUCTIONS})))
        while not is_event(ev := await recv(), AudioDeltaEvent):
            pass
        rid = ev["response_id"]
        await asyncio.sleep(rng.uniform(0.3, 1.5))
        # the onset is the frame where the clip's speech starts, at the time it is paced out
        onset_frame = int(speech_start_s(audio) * 1000 / FRAME_MS)
        t0 = time.monotonic()
        t.onset_wall = time.time() + onset_frame * FRAME_MS / 1000
        sender = asyncio.create_task(send_speech(ws.send, audio, 1.5, t0=t0))
        stopped = cancel_sent = False
        while True:
            ev = await recv()
            now = time.time()
            if is_event(ev, SpeechStartedEvent) and t.speech_started is None:
                t.speech_started = now
            elif is_event(ev, SpeechStoppedEvent):
                stopped = True
            elif is_event(ev, AudioDeltaEvent) and ev["response_id"] == rid:
                t.last_audio = now
                if stopped and t.speech_started is not None:
                    t.resumed = True
            elif is_event(ev, ResponseDoneEvent) and ev["response"]["id"] == rid:
                t.done = now
                t.status = ev["response"]["status"]
                t.reason = (ev["response"].get("status_details") or {}).get("reason")
                break
            if (sender.done() and not cancel_sent and kind != "barge_in"
                    and (t.resumed or t.speech_started is None)):
                cancel_sent = True  # seen enough: the burst was ignored or the answer resumed
                await ws.send(event_text(ResponseCancelEvent(type="response.cancel")))
        await sender
    return t


def _match(cancels: list[float], after: float) -> float | None:
    """The first cancellation that landed at or after a decision (within 5 s)."""
    later = [c for c in cancels if c >= after - 0.001]
    return min(later) if later and min(later) - after < 5.0 else None


async def run(url: str, http: str, api_key: str | None, barge_ins: int, false_rounds: int,
              seed: int) -> list[Trial]:
    rng = random.Random(seed)
    clips = [read_wav(p, RATE)[: int(2.5 * RATE)] for p in sorted(DATA.glob("*.wav"))]
    plan: list[tuple[str, np.ndarray]] = []
    for _ in range(false_rounds):
        plan += list(backchannels().items())
    trials: list[Trial] = []
    bar = tqdm(total=barge_ins + len(plan), desc="interruptions", unit="trial")
    # Barge-ins until `barge_ins` of them cut an answer that was still going (now and then the
    # small model's "long" answer ends before the user speaks; those trials are kept, marked).
    attempts = 0
    while sum(t.status == "cancelled" for t in trials) < barge_ins and attempts < 2 * barge_ins:
        t = await _barge_in(url, http, api_key, clips[attempts % len(clips)], rng)
        attempts += 1
        trials.append(t)
        bar.update(1 if t.status == "cancelled" else 0)
    for kind, audio in plan:
        trials.append(await trial(url, api_key, kind, audio, rng))
        bar.update(1)
    bar.close()
    return trials


async def _barge_in(url: str, http: str, api_key: str | None, audio: np.ndarray,
                    rng: random.Random) -> Trial:
    t = await trial(url, api_key, "barge_in", audio, rng)
    if t.reason == "turn_detected":
        await asyncio.sleep(0.5)  # let the replicas' cancels land before reading /stats
        stats = await asyncio.to_thread(_stats, http)
        decisions = [d for d in stats.get("recent_barge_ins", []) if d >= t.onset_wall]
        t.decision = min(decisions) if decisions else None
        if t.decision is not None:
            dep = stats["deployments"]
            t.llm_cancel = _match(dep["llm"].get("recent_cancels", []), t.decision)
            t.tts_cancel = _match(dep["tts"].get("recent_cancels", []), t.decision)
    return t


def summarise(trials: list[Trial]) -> dict[str, Any]:
    # only the trials where the answer was still going when the user spoke are barge-ins
    barge = [t for t in trials if t.kind == "barge_in" and t.status == "cancelled"]

    def series(a: str, b: str) -> dict[str, Any]:
        return pct([v for t in barge if (v := t.ms(getattr(t, a), getattr(t, b))) is not None])
    out: dict[str, Any] = {
        "answer_over_before_onset": sum(t.kind == "barge_in" and t.status != "cancelled"
                                        for t in trials),
        "barge_ins": len(barge),
        "cancelled_turn_detected": sum(t.reason == "turn_detected" for t in barge),
        "onset_to_speech_started_ms": series("onset_wall", "speech_started"),
        "onset_to_last_audio_ms": series("onset_wall", "last_audio"),
        "onset_to_decision_ms": series("onset_wall", "decision"),
        "decision_to_llm_cancel_ms": series("decision", "llm_cancel"),
        "decision_to_tts_cancel_ms": series("decision", "tts_cancel"),
        "false": {},
    }
    for kind in dict.fromkeys(t.kind for t in trials if t.kind != "barge_in"):
        rows = [t for t in trials if t.kind == kind]
        out["false"][kind] = {"trials": len(rows),
                              "heard_as_speech": sum(t.speech_started is not None for t in rows),
                              "cancelled": sum(t.reason == "turn_detected" for t in rows),
                              "resumed": sum(t.resumed for t in rows)}
    return out


def markdown(s: dict[str, Any]) -> str:
    def row(name: str, key: str) -> str:
        p = s[key]
        return f"| {name} | {p.get('n', 0)} | {p.get('p50', '-')} | {p.get('p95', '-')} |"
    lines = ["# Interruption benchmark", "",
             f"{s['barge_ins']} barge-ins (LibriVox speech over a long answer), "
             f"{s['cancelled_turn_detected']} ended `cancelled`/`turn_detected`; "
             f"{s['answer_over_before_onset']} more trials are left out because the answer had "
             "ended before the user spoke.", "",
             "| interval | n | p50 ms | p95 ms |", "|---|---|---|---|",
             row("speech onset -> `speech_started` received", "onset_to_speech_started_ms"),
             row("speech onset -> last audio delta of the answer received", "onset_to_last_audio_ms"),
             row("speech onset -> cancel decided (ingress)", "onset_to_decision_ms"),
             row("decision -> cancel landed in the LLM replica", "decision_to_llm_cancel_ms"),
             row("decision -> cancel landed in the TTS replica", "decision_to_tts_cancel_ms"),
             "", "Backchannels and noise over the agent:", "",
             "| sound | trials | heard as speech | cancelled the answer | answer resumed |",
             "|---|---|---|---|---|"]
    for kind, r in s["false"].items():
        lines.append(f"| {kind} | {r['trials']} | {r['heard_as_speech']} | {r['cancelled']} | "
                     f"{r['resumed']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="ws://host:port/v1/realtime of a running server")
    ap.add_argument("--api-key")
    ap.add_argument("--barge-ins", type=int, default=30)
    ap.add_argument("--false-rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", default="bench-results/interruptions")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = None
    url = args.url
    if url is None:
        print("[interruptions] starting voxserve serve (the default CPU pipeline)", flush=True)
        server = LocalServer(out / "server.log")
        url = server.url
    http = url.replace("ws://", "http://").replace("wss://", "https://").split("/v1/")[0]
    try:
        trials = asyncio.run(run(url, http, args.api_key, args.barge_ins, args.false_rounds,
                                 args.seed))
    finally:
        if server is not None:
            server.stop()
    summary = summarise(trials)
    (out / "report.json").write_text(json.dumps(
        {"env": environment(), "summary": summary, "trials": [asdict(t) for t in trials]},
        indent=1))
    (out / "report.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
