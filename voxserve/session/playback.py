"""The client's playback of the agent's audio, modelled from what the server sent: audio starts
playing when it arrives (if nothing is playing), plays at real time, and stops when the client
is expected to stop it (a barge-in's `speech_started`, `output_audio_buffer.clear`, a truncate).

The server itself only needs it to pace its output: audio goes out at most `max_lead_s` ahead of
playback. Serve's HTTP proxy does not pass a reader's back-pressure to the replica (a send
returns at once however far behind the client is: docs/limits.md), so without this pacing a
client that stopped reading would have every answer queued for it in the proxy in full; with it,
what waits for a reader is bounded by the lead plus real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import numpy as np

from voxserve.audio.echo import EchoReference


class Playback:
    def __init__(self, max_lead_s: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._max_lead = max_lead_s
        self._clock = clock
        self._sleep = sleep
        self._ends_at = clock()  # when the audio sent so far has finished playing
        self.paced_s = 0.0  # time spent waiting for playback to catch up (a metric)
        # the far end of echo cancellation, when the session has it (voxserve/audio/echo.py)
        self.reference: EchoReference | None = None

    def lead_s(self) -> float:
        """Seconds of audio sent and not yet played."""
        return max(0.0, self._ends_at - self._clock())

    async def pace(self, samples: np.ndarray, rate: int) -> None:
        """Before sending `samples` more audio: wait until it fits within the lead."""
        seconds = samples.size / rate
        excess = self.lead_s() + seconds - self._max_lead
        if excess > 0:
            await self._sleep(excess)
            self.paced_s += excess
        start = max(self._ends_at, self._clock())
        self._ends_at = start + seconds
        if self.reference is not None:
            self.reference.play(start, samples, rate)

    def flush(self) -> None:
        """The client stopped playing: nothing is queued there any more."""
        self._ends_at = self._clock()
        if self.reference is not None:
            self.reference.stop(self._ends_at)
