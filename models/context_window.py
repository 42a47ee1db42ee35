"""Fitting a conversation into the LLM's context window before it is sent.

A conversation longer than the context must still get an answer: llama.cpp refuses such a prompt
outright (`exceed_context_size_error`), and since the session sends the whole conversation every
turn, every later turn of that session would fail too. What is kept, in order of precedence:

1. the system prompt, cut to its first `system_share` of the context if it alone is longer (in
   tool mode the tool block sits at its end and is what gets cut; the answer schema still
   constrains any call);
2. the latest user message and whatever follows it, cut to its last tokens if it alone does not
   fit (the end of what someone said is what the answer must follow from);
3. as much recent history as fits: the oldest messages go first.

History is dropped in steps of a quarter context counted from the start of the conversation, not
message by message: the cut point then stays put while the conversation grows by up to a step, so
the prompt's prefix, and with it the slot's KV cache, is reused on the turns in between instead of
being prefilled again on every turn (prefill runs ~37 tokens/s on one CPU thread: a 3k-token
re-prefill costs over a minute).

Token counts come from the engine's own tokenizer, but only when a cheap bound says the prompt
might not fit: with byte-level BPE (Qwen, Llama 3) and SentencePiece with byte fallback a token
covers at least one byte, so UTF-8 bytes bound the count from above and short conversations are
never tokenized here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .base import DEFAULT_TRUNCATION, Truncation

# Chat templates wrap each message in a few tokens (ChatML: "<|im_start|>role\n" ... "<|im_end|>\n",
# 5 tokens; Llama 3 also 5); 8 leaves room for wordier templates and a SentencePiece word prefix.
MESSAGE_OVERHEAD = 8
# BOS and the generation prompt ("<|im_start|>assistant\n") after the last message.
PROMPT_OVERHEAD = 16


# A flattened tool result is a user turn to the chat template but not the user speaking: the
# message carrying this key (`tool_schema.flatten_tool_turns(keep_marks=True)`) never starts the
# latest turn, so the question it answers stays with it. Fitting strips the key.
TOOL_RESULT = "_tool_result"


def without_marks(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k != TOOL_RESULT} if TOOL_RESULT in m else m
            for m in messages]


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, tokens: Sequence[int]) -> str: ...


class ByteTokenizer:
    """One token per UTF-8 byte: counts no lower than any byte-level tokenizer's, so a prompt it
    fits also fits the model. The fallback when the model's own tokenizer cannot be reached; it
    keeps less history than the real count would."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    def decode(self, tokens: Sequence[int]) -> str:
        return bytes(tokens).decode(errors="ignore")  # a cut may split a character


@dataclass(frozen=True)
class FittedPrompt:
    """The messages to send and what was left out to make them fit (all zero: nothing)."""

    messages: list[dict[str, Any]]
    dropped_messages: int = 0
    dropped_tokens: int = 0
    system_cut_tokens: int = 0  # cut from the end of the system prompt
    latest_cut_tokens: int = 0  # cut from the start of the latest user message
    dropped_roles: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return bool(self.dropped_messages or self.system_cut_tokens or self.latest_cut_tokens)

    def describe(self) -> str:
        parts = []
        if self.dropped_messages:
            roles = Counter(self.dropped_roles)
            by_role = ", ".join(f"{n} {role}" for role, n in sorted(roles.items()))
            parts.append(f"dropped the {self.dropped_messages} oldest messages ({by_role}; "
                         f"{self.dropped_tokens} tokens)")
        if self.system_cut_tokens:
            parts.append(f"cut {self.system_cut_tokens} tokens from the end of the system prompt")
        if self.latest_cut_tokens:
            parts.append(f"cut {self.latest_cut_tokens} tokens from the start of the latest "
                         "user message")
        return "; ".join(parts) or "unchanged"


def prompt_budget(n_ctx: int, max_tokens: int) -> int:
    """Tokens the prompt may take: the context less room for the answer. The room is capped at a
    quarter of the context so that a client asking for a huge `max_output_tokens` still keeps most
    of its conversation; an answer longer than the room stops when the context is full."""
    return n_ctx - min(max_tokens, n_ctx // 4) - PROMPT_OVERHEAD


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if message.get("tool_calls"):
        text += json.dumps(message["tool_calls"], ensure_ascii=False)
    return text


def byte_bound(messages: Sequence[dict[str, Any]]) -> int:
    """An upper bound on the prompt's tokens without tokenizing (see the module docstring)."""
    return sum(len(_text(m).encode()) + MESSAGE_OVERHEAD for m in messages)


def needs_fitting(messages: Sequence[dict[str, Any]], *, n_ctx: int, max_tokens: int,
                  policy: Truncation = DEFAULT_TRUNCATION) -> bool:
    if policy.mode == "disabled":
        return False
    limit = policy.post_instructions_tokens
    if limit is not None:
        after = messages[1:] if messages and messages[0].get("role") == "system" else messages
        if byte_bound(after) > limit:
            return True
    return byte_bound(messages) > prompt_budget(n_ctx, max_tokens)


def fit_messages(messages: Sequence[dict[str, Any]], tokenizer: Tokenizer, *, n_ctx: int,
                 max_tokens: int, system_share: float = 0.5,
                 policy: Truncation = DEFAULT_TRUNCATION) -> FittedPrompt:
    """The messages, shortened as the module docstring says so that their prompt fits in
    `n_ctx` with room for a `max_tokens` answer, under the client's truncation `policy`."""
    budget = prompt_budget(n_ctx, max_tokens)
    if not needs_fitting(messages, n_ctx=n_ctx, max_tokens=max_tokens, policy=policy):
        return FittedPrompt(without_marks(messages))
    msgs = [dict(m) for m in messages]

    def cost(message: dict[str, Any]) -> int:
        return len(tokenizer.encode(_text(message))) + MESSAGE_OVERHEAD

    system: dict[str, Any] | None = msgs[0] if msgs and msgs[0].get("role") == "system" else None
    rest = msgs[1:] if system is not None else msgs
    system_cut = 0
    system_cost = 0
    if system is not None:
        system, system_cut = _cut(system, tokenizer, int(n_ctx * system_share) - MESSAGE_OVERHEAD,
                                  keep="head")
        system_cost = cost(system)

    users = [i for i, m in enumerate(rest) if m.get("role") == "user" and not m.get(TOOL_RESULT)]
    latest = users[-1] if users else max(len(rest) - 1, 0)
    history, tail = rest[:latest], rest[latest:]
    latest_cut = 0
    tail_room = budget - system_cost
    if tail and sum(cost(m) for m in tail) > tail_room:
        others = sum(cost(m) for m in tail[1:])
        if others + MESSAGE_OVERHEAD >= tail_room:
            tail = tail[:1]  # what followed the latest user message cannot fit beside it
            others = 0
        tail[0], latest_cut = _cut(tail[0], tokenizer, tail_room - others - MESSAGE_OVERHEAD,
                                   keep="tail")

    tail_cost = sum(cost(m) for m in tail)
    room = budget - system_cost - tail_cost
    if policy.post_instructions_tokens is not None:
        room = min(room, policy.post_instructions_tokens - tail_cost)
    costs = [cost(m) for m in history]
    # Cuts go in steps from the conversation's start, so the cut point holds while the history
    # grows by up to a step. A retention ratio r sets the step to (1 - r) of the room: a cut then
    # leaves about r of the room, as the client asked, and the next turns grow into the rest.
    step = n_ctx // 4
    if policy.retention_ratio is not None:
        step = int(max(room, 0) * (1.0 - policy.retention_ratio))
    keep_from = _sticky_cut(costs, room, step=max(1, step))
    # Templates that insist on alternating turns (Gemma, Mistral) reject a history that opens with
    # the assistant right after the system prompt.
    while keep_from < len(history) and history[keep_from].get("role") != "user":
        keep_from += 1
    dropped = history[:keep_from]
    kept = ([system] if system is not None else []) + history[keep_from:] + tail
    return FittedPrompt(without_marks(kept), dropped_messages=len(dropped), dropped_tokens=sum(costs[:keep_from]),
                        system_cut_tokens=system_cut, latest_cut_tokens=latest_cut,
                        dropped_roles=tuple(str(m.get("role")) for m in dropped))


def _sticky_cut(costs: list[int], room: int, *, step: int) -> int:
    """Index of the first history message kept: enough of the oldest dropped for the rest to fit
    in `room`, the amount dropped rounded up to a multiple of `step` tokens from the start."""
    total = sum(costs)
    excess = total - room
    if excess <= 0:
        return 0
    target = -(-excess // step) * step
    dropped = 0
    for i, c in enumerate(costs):
        if dropped >= target:
            return i
        dropped += c
    return len(costs)


def _cut(message: dict[str, Any], tokenizer: Tokenizer, limit: int,
         *, keep: str) -> tuple[dict[str, Any], int]:
    """The message with its content cut to `limit` tokens (its first ones for keep="head", its
    last for "tail"), and how many tokens went."""
    text = _text(message)
    tokens = tokenizer.encode(text)
    limit = max(limit, 0)
    if len(tokens) <= limit:
        return message, 0
    kept = tokens[:limit] if keep == "head" else tokens[len(tokens) - limit:]
    out = {k: v for k, v in message.items() if k != "tool_calls"}
    out["content"] = tokenizer.decode(kept) if kept else ""
    return out, len(tokens) - len(kept)


__all__ = ["ByteTokenizer", "FittedPrompt", "Tokenizer", "Truncation", "fit_messages",
           "needs_fitting", "prompt_budget"]
