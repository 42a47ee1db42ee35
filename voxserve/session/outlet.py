"""A response's only way out: a gate that can be held while an interruption is judged, and is
sealed when the response ends, so a cancelled response cannot write into the next one (a late
write raises instead of reaching the client)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from voxserve.protocol.server_events import ServerEvent


class SealedOutletError(RuntimeError):
    """Raised when something tries to emit for a response that has already ended."""


class Outlet:
    """The response's only way out. Holding it pauses the response's tasks at their next event
    until it is released or the response is cancelled (what the LLM replica generates meanwhile
    waits in the Serve stream, bounded by the answer's length)."""

    def __init__(self, send: Callable[[ServerEvent], Awaitable[None]]) -> None:
        self._send: Callable[[ServerEvent], Awaitable[None]] | None = send
        self._open = asyncio.Event()
        self._open.set()
        self._closing = False

    async def __call__(self, event: ServerEvent) -> None:
        if not self._closing:
            await self._open.wait()
        if self._send is None:
            raise SealedOutletError(f"{type(event).__name__} after the response ended")
        await self._send(event)

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def close_out(self) -> None:
        """Only the cancelled response's close-out passes a hold from now on. The gate itself
        stays shut: a held audio delta must not slip out in the moment before the response's
        own tasks receive their cancellation."""
        self._closing = True

    def seal(self) -> None:
        self._send = None
        self._open.set()
