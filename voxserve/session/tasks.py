"""Owned background tasks: every task a session part starts is kept by that part and cancelled
by its one `cancel()`, so nothing a gone client started keeps a model replica busy.

The tasks themselves run in the connection's task group (structured concurrency: the connection
scope outlives them all); an owner only remembers which of them are its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


class TaskOwner:
    """A set of tasks started through `spawn` (the connection's task group), forgotten once done.

    A coroutine started here must not raise: in a task group an escaping exception would cancel
    the whole connection (by design for the writer, a bug anywhere else)."""

    def __init__(self, spawn: Spawn) -> None:
        self._spawn = spawn
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task: asyncio.Task[T] = self._spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def __len__(self) -> int:
        return len(self._tasks)
