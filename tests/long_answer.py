"""A long spoken answer by construction, for the tests that need the agent to keep talking
(barge-in, truncation, a backchannel over the agent, an interrupted forecast).

The e2e server decodes greedily (temperature 0, a fixed seed: see tests/e2e/conftest.py), so
the answer to a given conversation is fixed. This one was chosen by running it: on the packaged
Qwen2.5-Coder-0.5B its greedy answer is a plain count in words, "One, two, three, ... thirty-nine,
forty." (99 tokens, about 20 s of speech), checked in tests/models/test_engines.py and again by
each e2e test that relies on it. The example turn is what makes it so: asked cold to count to one
hundred, the model answered with a numbered markdown list ("1. One\\n2. Two ..."), asked to count
to forty it skipped from twenty to thirty, and sampling it once asked what it should count.
"""

from __future__ import annotations

from typing import Any

from tests.speech import normalize

INSTRUCTIONS = ("You count aloud when asked, saying every number as a word. You never stop "
                "before the last number.")
_EXAMPLE_QUESTION = "Count from one to five, saying every number in words."
_EXAMPLE_ANSWER = "One, two, three, four, five."
PROMPT = "Count from one to forty, saying every number in words."
LAST = 40


def chat_messages() -> list[dict[str, str]]:
    """The conversation as the LLM sees it (the session puts the instructions first)."""
    return [{"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": _EXAMPLE_QUESTION},
            {"role": "assistant", "content": _EXAMPLE_ANSWER},
            {"role": "user", "content": PROMPT}]


def conversation_items() -> list[dict[str, Any]]:
    """The same turns as Realtime `conversation.item.create` items, in order; answer them with a
    `response.create` whose instructions are INSTRUCTIONS."""
    def message(role: str, kind: str, text: str) -> dict[str, Any]:
        return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}
    return [message("user", "input_text", _EXAMPLE_QUESTION),
            message("assistant", "output_text", _EXAMPLE_ANSWER),
            message("user", "input_text", PROMPT)]


_UNITS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def numbers(text: str) -> list[int]:
    """The numbers 1-99 said in `text`, in order (words or digits; "thirty-nine" is 39)."""
    words = normalize(text)
    out: list[int] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in _TENS:
            value = 20 + 10 * _TENS.index(w)
            if i + 1 < len(words) and words[i + 1] in _UNITS:
                value += _UNITS.index(words[i + 1]) + 1
                i += 1
            out.append(value)
        elif w in _UNITS:
            out.append(_UNITS.index(w) + 1)
        elif w in _TEENS:
            out.append(10 + _TEENS.index(w))
        i += 1
    return out


def counts_in_order(text: str, last: int = LAST) -> bool:
    """True when `text` counts 1, 2, ... up to `last` without a gap."""
    return numbers(text) == list(range(1, last + 1))


def said(response: dict[str, Any]) -> str:
    """What a response (the `response` of a response.done) said, for assertion messages."""
    parts = [part.get("transcript") or part.get("text") or ""
             for item in response.get("output") or () for part in item.get("content") or ()]
    return " ".join(p for p in parts if p)
