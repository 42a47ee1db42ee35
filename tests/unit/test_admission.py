"""Session admission (deployments/admission.py): the per-replica limit, the server-wide ledger
with a replica that goes silent, and a ledger that cannot be reached."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.fakes import Clock
from voxserve.config import LimitsOptions
from voxserve.deployments.admission import STALE_S, Admission, SessionBook

pytestmark = pytest.mark.unit


class BookLedger:
    """The actor's body called in process, as the ingress awaits the actor."""

    def __init__(self, book: SessionBook) -> None:
        self.book = book
        self.fail = False

    async def _call(self, method: str, *args: object) -> object:
        await asyncio.sleep(0)  # an actor call yields, as the remote one does
        if self.fail:
            raise ConnectionError("actor died")
        return getattr(self.book, method)(*args)

    async def claim(self, replica: str, limit: int) -> bool:
        return bool(await self._call("claim", replica, limit))

    async def release(self, replica: str) -> None:
        await self._call("release", replica)

    async def report(self, replica: str, count: int) -> None:
        await self._call("report", replica, count)

    async def total(self) -> int:
        return int(await self._call("total"))  # type: ignore[call-overload]


def test_the_book_counts_every_replica_and_forgets_a_silent_one() -> None:
    clock = Clock()
    book = SessionBook(clock)
    assert book.claim("a", 3) and book.claim("b", 3) and book.claim("b", 3)
    assert not book.claim("a", 3) and book.total() == 3
    book.release("b")
    assert book.claim("a", 3)
    clock.now += STALE_S / 2
    book.report("a", 2)  # a reports; b (1 session) stays silent
    clock.now += STALE_S / 2 + 1
    assert book.total() == 2  # b's session no longer counts
    book.report("a", 0)
    assert book.total() == 0


async def test_a_replica_admits_up_to_its_limit() -> None:
    admission = Admission(LimitsOptions(max_sessions_per_replica=2))
    assert await admission.enter() is None and await admission.enter() is None
    refusal = await admission.enter()
    assert refusal is not None and "limits.max_sessions_per_replica" in refusal
    await admission.leave()
    assert await admission.enter() is None
    assert await admission.server_sessions() is None  # no server-wide limit: no ledger


async def test_replicas_share_the_server_limit() -> None:
    ledger = BookLedger(SessionBook())
    limits = LimitsOptions(max_sessions=3)
    first, second = Admission(limits, ledger), Admission(limits, ledger)
    assert [await first.enter(), await first.enter(), await second.enter()] == [None] * 3
    refusal = await second.enter()
    assert refusal is not None and "limits.max_sessions" in refusal
    assert await second.server_sessions() == 3 and second.open == 1
    await first.leave()
    assert await second.enter() is None and await first.server_sessions() == 3


async def test_concurrent_handshakes_never_pass_the_limit() -> None:
    ledger = BookLedger(SessionBook())
    limits = LimitsOptions(max_sessions=5)
    replicas = [Admission(limits, ledger) for _ in range(3)]
    results = await asyncio.gather(*(r.enter() for r in replicas for _ in range(4)))
    assert results.count(None) == 5
    assert sum(r.open for r in replicas) == 5 == await ledger.total()


async def test_a_lost_ledger_falls_back_to_the_replica_limit() -> None:
    ledger = BookLedger(SessionBook())
    admission = Admission(LimitsOptions(max_sessions=1, max_sessions_per_replica=2), ledger)
    assert await admission.enter() is None
    ledger.fail = True
    assert await admission.enter() is None  # admitted: availability over a lost count
    refusal = await admission.enter()
    assert refusal is not None and "max_sessions_per_replica" in refusal
    await admission.leave()  # a failing release is logged, not raised
    assert await admission.server_sessions() is None
