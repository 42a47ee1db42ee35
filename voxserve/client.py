"""A small realtime client on `websockets`: streams a recording as a microphone would and
collects the answer. Used by `voxserve talk` and by the benchmarks in `bench/`.

It speaks the GA dialect (the default of the `openai` SDK) and measures time to first audio
(TTFA) as the user hears it: from the end of the user's speech in the sent stream to the first
audio delta that is not silence.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from voxserve.audio.formats import AudioFormat, b64decode_strict, b64encode
from voxserve.audio.resample import resample
from voxserve.protocol.client_events import (
    ClientEvent,
    InputAudioBufferAppendEvent,
    SessionUpdateEvent,
)
from voxserve.protocol.server_events import (
    AudioDeltaEvent,
    AudioTranscriptDoneEvent,
    CommittedEvent,
    ErrorEvent,
    ResponseDoneEvent,
    ServerEvent,
    SessionCreatedEvent,
    SessionUpdatedEvent,
    TranscriptionCompletedEvent,
    wire_names,
)

RATE = 24000
FRAME_MS = 40
AUDIBLE_RMS = 0.01  # ~-40 dBFS: quieter frames count as silence
SPEECH_FRAME_MS = 20  # where a recording's speech starts and ends
ONSET_FRAME_MS = 10  # where an answer's audio starts: TTFA and leading silence to 10 ms


def read_wav(path: str | Path, rate: int = RATE) -> np.ndarray:
    """A mono PCM16 WAV as float32 at `rate`."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        data = AudioFormat("pcm16", w.getframerate()).decode(w.readframes(w.getnframes()))
        if w.getnchannels() > 1:
            data = data.reshape(-1, w.getnchannels()).mean(axis=1)
        return resample(data, w.getframerate(), rate)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(AudioFormat("pcm16", rate).encode(samples))


def audible_frames(samples: np.ndarray, rate: int = RATE,
                   frame_ms: int = SPEECH_FRAME_MS) -> np.ndarray:
    """Start offsets (in samples) of the `frame_ms` frames whose RMS is above `AUDIBLE_RMS`,
    the one loudness test of the client and the benchmarks. A short last frame counts."""
    if not samples.size:
        return np.zeros(0, np.int64)
    hop = rate * frame_ms // 1000
    starts = np.arange(0, samples.size, hop)
    sizes = np.diff(np.append(starts, samples.size))
    power = np.add.reduceat(np.square(samples, dtype=np.float64), starts) / sizes
    return starts[np.sqrt(power) > AUDIBLE_RMS]


def first_audible_s(samples: np.ndarray, rate: int = RATE,
                    frame_ms: int = ONSET_FRAME_MS) -> float | None:
    """Where the first audible frame starts, in seconds; None when all of it is silence."""
    loud = audible_frames(samples, rate, frame_ms)
    return float(loud[0] / rate) if loud.size else None


def speech_start_s(samples: np.ndarray, rate: int = RATE) -> float:
    """Where the first audible 20 ms frame of a recording starts (0 when none is)."""
    return first_audible_s(samples, rate, SPEECH_FRAME_MS) or 0.0


def speech_end_s(samples: np.ndarray, rate: int = RATE) -> float:
    """Where the last audible 20 ms frame of a recording ends (its trailing silence excluded)."""
    loud = audible_frames(samples, rate, SPEECH_FRAME_MS)
    hop = rate * SPEECH_FRAME_MS // 1000
    return float(min(loud[-1] + hop, samples.size) / rate) if loud.size else 0.0


def pcm16_frames(audio: np.ndarray, tail_silence_s: float = 0.0, frame_ms: int = FRAME_MS,
                 rate: int = RATE) -> list[str]:
    """The base64 PCM16 frames a microphone would stream: `audio`, then `tail_silence_s` of
    silence, cut into `frame_ms` pieces."""
    padded = np.concatenate([audio, np.zeros(int(tail_silence_s * rate), np.float32)])
    step = rate * frame_ms // 1000
    pcm16 = AudioFormat("pcm16", rate)
    return [b64encode(pcm16.encode(padded[i:i + step])) for i in range(0, padded.size, step)]


def pcm16_samples(delta: str) -> np.ndarray:
    """A received base64 PCM16 audio delta as float32 samples."""
    return AudioFormat("pcm16", RATE).decode(b64decode_strict(delta))


def event_text(event: ClientEvent) -> str:
    """A client event as the text frame the server reads (fields never set are left out)."""
    return event.model_dump_json(exclude_unset=True)


@functools.cache
def _names(event: type[ServerEvent]) -> frozenset[str]:
    return wire_names(event)


def is_event(received: dict[str, Any], event: type[ServerEvent]) -> bool:
    """Whether a received event (the parsed JSON) is an `event`, by its name in any dialect."""
    return received.get("type") in _names(event)


async def send_speech(send: Callable[[str], Awaitable[object]], audio: np.ndarray,
                      tail_silence_s: float = 0.0, *, t0: float | None = None,
                      realtime: bool = True) -> None:
    """Stream `audio`, then `tail_silence_s` of silence, as `input_audio_buffer.append` frames
    paced like a microphone: frame i goes out at `t0` (monotonic, default now) + i frames."""
    t0 = time.monotonic() if t0 is None else t0
    for i, frame in enumerate(pcm16_frames(audio, tail_silence_s)):
        await send(event_text(InputAudioBufferAppendEvent(type="input_audio_buffer.append",
                                                          audio=frame)))
        if realtime:
            await asyncio.sleep(max(0.0, t0 + (i + 1) * FRAME_MS / 1000 - time.monotonic()))


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
            await _expect(conn, SessionCreatedEvent, timeout_s)
            await conn.send(event_text(SessionUpdateEvent(
                type="session.update", session=session or {
                    "type": "realtime",
                    "audio": {"input": {"transcription": {"model": "whisper-1"},
                                        "turn_detection": {"type": "server_vad"}}}})))
            await _expect(conn, SessionUpdatedEvent, timeout_s)
            return await run_turn(url, audio, tail_silence_s=tail_silence_s, timeout_s=timeout_s,
                                  realtime=realtime, ws=conn)
    result = TurnResult()
    t0 = time.monotonic()
    speech_end_at = t0 + speech_end_s(audio)
    pieces: list[np.ndarray] = []
    send_task = asyncio.create_task(send_speech(ws.send, audio, tail_silence_s, t0=t0,
                                                realtime=realtime))
    try:
        deadline = time.monotonic() + timeout_s + audio.size / RATE + tail_silence_s
        while True:
            raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
            now = time.monotonic()
            ev = json.loads(raw)
            if is_event(ev, AudioDeltaEvent):
                pcm = pcm16_samples(ev["delta"])
                pieces.append(pcm)
                if result.first_delta_s is None:
                    result.first_delta_s = now - speech_end_at
                if result.ttfa_s is None and first_audible_s(pcm) is not None:
                    result.ttfa_s = now - speech_end_at
                continue
            result.events.append(ev)
            if is_event(ev, CommittedEvent) and result.committed_s is None:
                result.committed_s = now - speech_end_at
            elif is_event(ev, TranscriptionCompletedEvent):
                result.user_transcript = ev["transcript"]
            elif is_event(ev, AudioTranscriptDoneEvent):
                result.answer_transcript = ev["transcript"]
            elif is_event(ev, ErrorEvent):
                result.errors.append(ev["error"])
            elif is_event(ev, ResponseDoneEvent):
                result.status = ev["response"]["status"]
                break
    finally:
        send_task.cancel()
    result.audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return result


async def _expect(ws: Any, event: type[ServerEvent], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        ev = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic())))
        if is_event(ev, event):
            return ev  # type: ignore[no-any-return]
        if is_event(ev, ErrorEvent):
            raise RuntimeError(f"server error while waiting for {event.type}: {ev['error']}")
