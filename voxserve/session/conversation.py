"""The conversation: ordered items, what the client heard of each answer, and the LLM context.

The LLM only ever sees text: user audio enters as its transcript and an assistant's spoken
answer as the words it said (cut at the truncation point once the client says how much it
played). Transcripts of user audio may still be decoding when a response starts, so each is a
future the response awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from voxserve.models.base import Word
from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.protocol.items import Item
from voxserve.protocol.server_events import ItemDeletedEvent, ServerEvent

MAX_ITEMS = 1000  # default `limits.max_conversation_items`


@dataclass
class SpokenAudio:
    """Audio an assistant item produced: its length and the timed words in it."""

    duration_ms: float = 0.0
    words: list[Word] = field(default_factory=list)  # times in seconds from the part's start

    def text_until(self, end_ms: float) -> str:
        return " ".join(w.text for w in self.words if w.start_s * 1000 < end_ms).strip()


ROOT = "root"  # the `previous_item_id` of the conversation's start
CONVERSATION_ID = "conv_default"  # a session holds one conversation


class Conversation:
    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        # past this the oldest items are deleted, to bound a long session's memory; the client
        # is told (`announce_evictions`), so its copy of the conversation stays the same
        self._max_items = max_items
        self._evicted: list[str] = []
        self._items: list[Item] = []
        self.transcripts: dict[str, asyncio.Future[str]] = {}
        self.spoken: dict[str, SpokenAudio] = {}
        # assistant messages said to fill a wait (an interim response, a server tool's
        # preamble): the client has them, the LLM's context does not (they would put two
        # assistant turns around a tool call, which some chat templates refuse)
        self.fillers: set[str] = set()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def last_id(self) -> str | None:
        return self._items[-1].id if self._items else None

    def get(self, item_id: str, param: str = "item_id") -> Item:
        for item in self._items:
            if item.id == item_id:
                return item
        raise ProtocolError(ErrorCode.ITEM_NOT_FOUND, f"item {item_id!r} does not exist", param)

    def add(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Insert `item` after `previous_item_id` (default: at the end; "root": first, as the
        reference service and LiveKit's context sync use it); returns the id before it."""
        if any(i.id == item.id for i in self._items):
            raise ProtocolError(ErrorCode.INVALID_VALUE, f"item id {item.id!r} already exists",
                                "item.id")
        if previous_item_id == ROOT and all(i.id != ROOT for i in self._items):
            index = 0
        elif previous_item_id is not None:
            self.get(previous_item_id, "previous_item_id")
            index = next(i for i, it in enumerate(self._items) if it.id == previous_item_id) + 1
        else:
            index = len(self._items)
        before = self._items[index - 1].id if index > 0 else None
        self._items.insert(index, item)
        while len(self._items) > self._max_items:
            self._evicted.append(self._items[0].id)
            self.forget(self._items[0].id)
        return before

    async def announce_evictions(self, send: Callable[[ServerEvent], Awaitable[None]]) -> None:
        """`conversation.item.deleted` for each item the limit removed since the last call."""
        evicted, self._evicted = self._evicted, []
        for item_id in evicted:
            await send(ItemDeletedEvent(item_id=item_id))

    def delete(self, item_id: str) -> None:
        self.get(item_id)
        self.forget(item_id)

    def forget(self, item_id: str) -> None:
        self._items = [i for i in self._items if i.id != item_id]
        future = self.transcripts.pop(item_id, None)
        if future is not None and not future.done():
            future.cancel()
        self.spoken.pop(item_id, None)
        self.fillers.discard(item_id)

    async def chat_messages(self, system_prompt: str,
                            pending: str | None = None) -> list[dict[str, Any]]:
        """The context for the LLM, in OpenAI chat format, awaiting pending transcripts.
        `pending`: the words of a user turn not committed yet, as its item will read."""
        messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}]
        for item in list(self._items):
            if item.id in self.fillers:
                continue
            if item.type == "message":
                text = " ".join(p.spoken_text() for p in item.content).strip()
                future = self.transcripts.get(item.id)
                if future is not None:
                    # Shielded: a cancelled response must not cancel the item's transcription.
                    # The transcription task resolves the future to "" on failure, never raises.
                    text = await asyncio.shield(future)
                if not text:
                    continue
                role = item.role or "user"
                messages.append({"role": role, "content": text})
            elif item.type == "function_call":
                messages.append(call_message(item))
            else:
                messages.append(result_message(item))
        if pending:
            messages.append({"role": "user", "content": pending})
        return _merge_adjacent(messages)


def call_message(item: Item) -> dict[str, Any]:
    """A `function_call` item as the LLM reads it (OpenAI chat format)."""
    return {"role": "assistant", "content": "", "tool_calls": [{
        "id": item.call_id, "type": "function",
        "function": {"name": item.name, "arguments": item.arguments or "{}"}}]}


def result_message(item: Item) -> dict[str, Any]:
    """A `function_call_output` item as the LLM reads it."""
    return {"role": "tool", "tool_call_id": item.call_id, "content": item.output or ""}


def _merge_adjacent(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat templates of small models expect alternating turns; join runs of plain messages of
    one role (two user utterances in a row become one)."""
    merged: list[dict[str, Any]] = []
    for msg in messages:
        prev = merged[-1] if merged else None
        if (prev is not None and prev["role"] == msg["role"] and msg["role"] in ("user", "assistant")
                and "tool_calls" not in prev and "tool_calls" not in msg):
            prev["content"] = f"{prev['content']} {msg['content']}".strip()
        else:
            merged.append(dict(msg))
    return merged

