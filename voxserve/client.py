"""A small realtime client on `websockets`: streams a recording as a microphone would and
collects the answer. Used by `voxserve talk` and by the benchmarks in `bench/`.

It speaks the GA dialect (the default of the `openai` SDK) and measures time to first audio
(TTFA) as the user hears it: from the end of the user's speech in the sent stream to the first
audio delta that is not silence.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from voxserve.audio.resample import resample

RATE = 24000
FRAME_MS = 40
AUDIBLE_RMS = 0.01  # ~-40 dBFS: quieter deltas count as silence for TTFA


def read_wav(path: str | Path, rate: int = RATE) -> np.ndarray:
    """A mono PCM16 WAV as float32 at `rate`."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels()).mean(axis=1)
        return resample(data, w.getframerate(), rate)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def _loud_frames(samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Indices of the audible 20 ms frames of a recording, and the frame length."""
    hop = rate // 50
    frames = samples[: samples.size // hop * hop].reshape(-1, hop)
    return np.nonzero(np.sqrt((frames ** 2).mean(axis=1)) > AUDIBLE_RMS)[0], hop


def speech_end_s(samples: np.ndarray, rate: int = RATE) -> float:
    """Where the last audible 20 ms frame of a recording ends (its trailing silence excluded)."""
    loud, hop = _loud_frames(samples, rate)
    return float((loud[-1] + 1) * hop / rate) if loud.size else 0.0


def speech_start_s(samples: np.ndarray, rate: int = RATE) -> float:
    """Where the first audible 20 ms frame of a recording starts."""
    loud, hop = _loud_frames(samples, rate)
    return float(loud[0] * hop / rate) if loud.size else 0.0


def pcm16_frames(audio: np.ndarray, tail_silence_s: float = 0.0, frame_ms: int = FRAME_MS,
                 rate: int = RATE) -> list[str]:
    """The base64 PCM16 frames a microphone would stream: `audio`, then `tail_silence_s` of
    silence, cut into `frame_ms` pieces."""
    padded = np.concatenate([audio, np.zeros(int(tail_silence_s * rate), np.float32)])
    step = rate * frame_ms // 1000
    return [base64.b64encode((np.clip(padded[i:i + step], -1, 1) * 32767).astype("<i2").tobytes())
            .decode() for i in range(0, padded.size, step)]


@dataclass
class TurnResult:
    user_transcript: str = ""
    answer_transcript: str = ""
    status: str = ""
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    ttfa_s: float | None = None  # end of speech sent -> first audible audio received
    first_delta_s: float | None = None  # end of speech sent -> first audio delta (even silent)
    committed_s: float | None = None  # end of speech sent -> input_audio_buffer.committed
    events: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


async def run_turn(url: str, audio: np.ndarray, *, api_key: str | None = None,
                   tail_silence_s: float = 1.5, timeout_s: float = 60.0,
                   session: dict[str, Any] | None = None, realtime: bool = True,
                   ws: Any = None) -> TurnResult:
    """Stream one utterance (paced in real time) over a new or given socket; wait for the
    answer's `response.done`."""
    if ws is None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        async with websockets.connect(url, additional_headers=headers, max_size=None) as conn:
            await _expect(conn, "session.created", timeout_s)
            await conn.send(json.dumps({"type": "session.update", "session": session or {
                "type": "realtime",
                "audio": {"input": {"transcription": {"model": "whisper-1"},
                                    "turn_detection": {"type": "server_vad"}}}}}))
            await _expect(conn, "session.updated", timeout_s)
            return await run_turn(url, audio, tail_silence_s=tail_silence_s, timeout_s=timeout_s,
                                  realtime=realtime, ws=conn)
    result = TurnResult()
    end_offset = speech_end_s(audio)
    frames = pcm16_frames(audio, tail_silence_s)
    t0 = time.monotonic()
    speech_end_at = t0 + end_offset

    async def sender() -> None:
        for i, frame in enumerate(frames):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": frame}))
            if realtime:
                await asyncio.sleep(max(0.0, t0 + (i + 1) * FRAME_MS / 1000 - time.monotonic()))

    pieces: list[np.ndarray] = []
    send_task = asyncio.create_task(sender())
    try:
        deadline = time.monotonic() + timeout_s + len(frames) * FRAME_MS / 1000
        while True:
            raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
            now = time.monotonic()
            ev = json.loads(raw)
            kind = ev["type"]
            if kind in ("response.output_audio.delta", "response.audio.delta"):
                pcm = np.frombuffer(base64.b64decode(ev["delta"]), "<i2").astype(np.float32) / 32768
                pieces.append(pcm)
                if result.first_delta_s is None:
                    result.first_delta_s = now - speech_end_at
                if result.ttfa_s is None and pcm.size and np.sqrt((pcm ** 2).mean()) > AUDIBLE_RMS:
                    result.ttfa_s = now - speech_end_at
                continue
            result.events.append(ev)
            if kind == "input_audio_buffer.committed" and result.committed_s is None:
                result.committed_s = now - speech_end_at
            elif kind == "conversation.item.input_audio_transcription.completed":
                result.user_transcript = ev["transcript"]
            elif kind in ("response.output_audio_transcript.done", "response.audio_transcript.done"):
                result.answer_transcript = ev["transcript"]
            elif kind == "error":
                result.errors.append(ev["error"])
            elif kind == "response.done":
                result.status = ev["response"]["status"]
                break
    finally:
        send_task.cancel()
    result.audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return result


async def _expect(ws: Any, kind: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        ev = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
        if ev["type"] == kind:
            return ev  # type: ignore[no-any-return]
        if ev["type"] == "error":
            raise RuntimeError(f"server error while waiting for {kind}: {ev['error']}")
