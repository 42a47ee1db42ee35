"""Rate limits on what a client sends: client events per second and input audio faster than
real time. Each is a token bucket; a refused message is answered with one `rate_limited`
error, and a flood of them with at most one error per second that counts what it stands for,
so the refusals cannot themselves flood the client's socket."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from voxserve.config import LimitsOptions
from voxserve.protocol.errors import ErrorCode, ProtocolError

NOTICE_INTERVAL_S = 1.0


class TokenBucket:
    """`rate` tokens per second, at most `capacity` saved up."""

    def __init__(self, rate: float, capacity: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._capacity = capacity
        self._tokens = capacity
        self._clock = clock
        self._at = clock()

    def take(self, amount: float = 1.0) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < amount:
            return False
        self._tokens -= amount
        return True


class Refusals:
    """Counts refused messages; says when to tell the client (the first at once, then at most
    once per NOTICE_INTERVAL_S) and how many the notice stands for."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._told_at = float("-inf")
        self._untold = 0
        self.total = 0

    def refused(self) -> int | None:
        self._untold += 1
        self.total += 1
        now = self._clock()
        if now - self._told_at < NOTICE_INTERVAL_S:
            return None
        count, self._untold, self._told_at = self._untold, 0, now
        return count


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    # the error to send for a refusal: none when the client was told less than a second ago
    # (this refusal is counted in the next notice)
    notice: ProtocolError | None = None


ADMITTED = Verdict(True)


class InputLimits:
    """The two limits on one session's input."""

    def __init__(self, limits: LimitsOptions, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._events = TokenBucket(limits.max_events_per_second, limits.event_burst, clock)
        self._audio = TokenBucket(limits.max_audio_speed, limits.audio_burst_seconds, clock)
        self.events_refused = Refusals(clock)
        self.audio_refused = Refusals(clock)

    def admit_event(self) -> Verdict:
        return _admit(self._events, 1.0, self.events_refused, lambda refused: (
            f"more than {self._limits.max_events_per_second:g} client events per second "
            f"(limits.max_events_per_second): {refused} refused unread; slow down"), None)

    def admit_audio(self, seconds: float) -> Verdict:
        return _admit(self._audio, seconds, self.audio_refused, lambda refused: (
            f"input audio faster than {self._limits.max_audio_speed:g}x real time "
            f"(limits.max_audio_speed, after a {self._limits.audio_burst_seconds:g} s burst): "
            f"{refused} of audio refused; send it at the pace it is captured"), "audio")


def _admit(bucket: TokenBucket, amount: float, refusals: Refusals,
           message: Callable[[str], str], param: str | None) -> Verdict:
    if bucket.take(amount):
        return ADMITTED
    count = refusals.refused()
    if count is None:
        return Verdict(False)
    refused = "1 message" if count == 1 else f"{count} messages"
    return Verdict(False, ProtocolError(ErrorCode.RATE_LIMITED, message(refused), param))
