"""Session admission: how many sessions one ingress replica, and the whole server, may hold.

A full replica or server refuses a new socket before the upgrade (HTTP 503 with the limit that
was hit), so a client learns at once instead of hanging in the handshake. The server-wide count
lives in one named Ray actor (`SessionLedger`) that every ingress replica claims from and
reports to; a replica that dies stops reporting, and its sessions stop counting after
`STALE_S`. Without `limits.max_sessions` no actor is made and admission is local only.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from voxserve.config import LimitsOptions

log = logging.getLogger("voxserve.admission")

LEDGER_NAME = "voxserve_session_ledger"
LEDGER_NAMESPACE = "voxserve"
REPORT_S = 5.0  # each replica tells the ledger its exact count this often
STALE_S = 30.0  # a replica silent this long (crashed, removed) no longer counts


@dataclass
class _Entry:
    count: int
    seen: float


class SessionBook:
    """The server-wide count, per replica (the body of the `SessionLedger` actor)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._replicas: dict[str, _Entry] = {}

    def claim(self, replica: str, limit: int) -> bool:
        """One more session on `replica`, unless the server already holds `limit`."""
        if self.total() >= limit:
            return False
        entry = self._replicas.setdefault(replica, _Entry(0, self._clock()))
        entry.count += 1
        entry.seen = self._clock()
        return True

    def release(self, replica: str) -> None:
        if (entry := self._replicas.get(replica)) is not None:
            entry.count = max(0, entry.count - 1)
            entry.seen = self._clock()

    def report(self, replica: str, count: int) -> None:
        """The replica's own count, which corrects any claim or release lost on the way."""
        self._replicas[replica] = _Entry(count, self._clock())

    def total(self) -> int:
        now = self._clock()
        for replica in [r for r, e in self._replicas.items() if now - e.seen > STALE_S]:
            log.warning("session ledger: replica %s silent for %.0f s; its sessions no longer "
                        "count", replica, now - self._replicas[replica].seen)
            del self._replicas[replica]
        return sum(e.count for e in self._replicas.values())


class Ledger(Protocol):
    """What admission needs of the ledger (the actor's methods, awaited)."""

    def claim(self, replica: str, limit: int) -> Awaitable[bool]: ...

    def release(self, replica: str) -> Awaitable[None]: ...

    def report(self, replica: str, count: int) -> Awaitable[None]: ...

    def total(self) -> Awaitable[int]: ...


class _ActorLedger:
    """The named actor, got or created on first use (whichever replica comes first makes it)."""

    def __init__(self) -> None:
        self._actor: Any = None

    def _get(self) -> Any:
        if self._actor is None:
            import ray
            # detached: it must outlive whichever replica happened to create it; a redeploy
            # finds it again, and the old replicas' entries go stale
            self._actor = ray.remote(num_cpus=0)(SessionBook).options(
                name=LEDGER_NAME, namespace=LEDGER_NAMESPACE, get_if_exists=True,
                lifetime="detached").remote()
        return self._actor

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._get(), method).remote(*args)
        except Exception:
            self._actor = None  # the actor died: the next call makes or finds it again
            raise

    def claim(self, replica: str, limit: int) -> Awaitable[bool]:
        return self._call("claim", replica, limit)  # type: ignore[no-any-return]

    def release(self, replica: str) -> Awaitable[None]:
        return self._call("release", replica)  # type: ignore[no-any-return]

    def report(self, replica: str, count: int) -> Awaitable[None]:
        return self._call("report", replica, count)  # type: ignore[no-any-return]

    def total(self) -> Awaitable[int]:
        return self._call("total")  # type: ignore[no-any-return]


class Admission:
    """One ingress replica's side: `enter` before the upgrade, `leave` when the session ends."""

    def __init__(self, limits: LimitsOptions, ledger: Ledger | None = None) -> None:
        self._per_replica = limits.max_sessions_per_replica
        self._server = limits.max_sessions
        self._ledger = ledger if ledger is not None or self._server is None else _ActorLedger()
        self._replica = uuid.uuid4().hex[:12]
        self.open = 0  # sessions admitted here and not yet left
        self._claiming = 0  # claims sent to the ledger and not yet answered
        self._reporter: asyncio.Task[None] | None = None

    async def enter(self) -> str | None:
        """None when admitted (then `leave` must follow); else why not, for the 503."""
        if self.open + self._claiming >= self._per_replica:
            return (f"server busy: this ingress replica holds its maximum of {self._per_replica} "
                    "sessions (limits.max_sessions_per_replica); retry later")
        if self._ledger is None or self._server is None:
            self.open += 1
            return None
        self._start_reporting()
        self._claiming += 1
        try:
            admitted = await self._ledger.claim(self._replica, self._server)
        except Exception:  # availability first: a lost ledger must not refuse every session
            log.warning("session ledger unreachable; admitting on the replica limit only",
                        exc_info=True)
            admitted = True
        finally:
            self._claiming -= 1
        if not admitted:
            return (f"server busy: the server holds its maximum of {self._server} sessions "
                    "(limits.max_sessions); retry later")
        self.open += 1
        return None

    async def leave(self) -> None:
        self.open -= 1
        if self._ledger is not None:
            try:
                await self._ledger.release(self._replica)
            except Exception:  # the next report corrects the count
                log.warning("session ledger unreachable on release", exc_info=True)

    async def server_sessions(self) -> int | None:
        """The server-wide count, when there is a server-wide limit."""
        if self._ledger is None:
            return None
        try:
            return await self._ledger.total()
        except Exception:
            return None

    def _start_reporting(self) -> None:
        if self._reporter is None or self._reporter.done():
            self._reporter = asyncio.get_running_loop().create_task(self._report_forever())

    async def _report_forever(self) -> None:
        assert self._ledger is not None
        while True:
            # A report sent while a claim is unanswered would land after it and overwrite it
            # with a count that misses that session (the actor runs one caller's calls in order).
            while self._claiming:
                await asyncio.sleep(0.05)
            try:
                await self._ledger.report(self._replica, self.open)
            except Exception:
                log.warning("session ledger unreachable on report", exc_info=True)
            await asyncio.sleep(REPORT_S)
