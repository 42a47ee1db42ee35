"""Speak or call: the first decision of a tool-enabled answer, taken on its own.

The constrained answer (`models.tool_schema`) opens with `{"type": "` and its next token names
either "message" or a tool. Decoding that envelope token by token costs ~8 decode steps before the
first spoken word, and sampling the decision lets a small model talk over a call it should make
(measured on the 0.5B default: 3 of 7 weather questions were answered with invented weather). So an
engine that can prefill an assistant turn splits the answer in two:

1. **decide**: the prompt plus the opening `{"type": "`, one token, its top probabilities. The
   probability mass of tokens that begin a tool's name against those that begin "message" gives
   P(call); the answer calls when P(call) reaches a threshold chosen on half of the labelled set
   in `bench/tool_cases.py` (and reported on the other half).
2. **speak** with `{"type": "message", "text": "` prefilled, so the first generated token is the
   first word; or **call** with the say-or-call schema restricted to the tools.

A call identical to one already made since the user last spoke is never returned: the answer
speaks instead (the result is in the conversation already).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from .base import ToolSpec
from .tool_schema import TYPE_MESSAGE, content_text

OPENING = '{"type": "'
MESSAGE_OPENING = OPENING + TYPE_MESSAGE + '", "text": "'
# GBNF for what follows MESSAGE_OPENING: the rest of a JSON string and the object's close, so a
# prefilled spoken answer ends where the constrained one would (and llama.cpp stops there).
JSON_STRING_REST = r'''root ::= char* "\"}"
char ::= [^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'''
TOP_LOGPROBS = 20  # the decision's first token is almost always among the top few

# P(call) at or above which an "auto" answer calls a tool. Chosen on the even-numbered half of
# the labelled set (bench/tool_use.py --decisions); docs/perf/tool-use.md has both halves.
DEFAULT_CALL_THRESHOLD = 0.74
# After a tool result the model must be surer: a second call is rarely what the user needs, and
# an identical one is refused anyway.
AFTER_RESULT_THRESHOLD = 0.5


def decides(tool_choice: str) -> bool:
    """Whether the model chooses between speaking and calling ("auto", or unset): "none",
    "required" and a named tool are the client's choice, and their calls are not checked."""
    return tool_choice in ("auto", "")


def call_probability(top: Iterable[tuple[str, float]], tools: Sequence[ToolSpec]) -> float:
    """P(call) from the decision token's top (token text, logprob) pairs.

    A token counts for a tool when it is a prefix of a tool's name ("get" of "get_weather"), for
    speaking when it is a prefix of "message"; a token that fits both or neither is left out
    ("weather", "getMessage"). With no mass on either side the answer speaks."""
    call = speak = 0.0
    names = [t.name for t in tools]
    for token, logprob in top:
        text = token.lstrip()
        if not text:
            continue
        p = math.exp(logprob)
        for_call = any(name.startswith(text) for name in names)
        for_speech = TYPE_MESSAGE.startswith(text)
        if for_call and not for_speech:
            call += p
        elif for_speech and not for_call:
            speak += p
    return call / (call + speak) if call + speak > 0 else 0.0


def after_tool_result(messages: Sequence[dict[str, Any]]) -> bool:
    """Whether the conversation's last turn is a tool result (OpenAI chat shape)."""
    return bool(messages) and messages[-1].get("role") == "tool"


def _parsed(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments


def repeats_call(messages: Sequence[dict[str, Any]], name: str, arguments: str) -> bool:
    """Whether `name(arguments)` was already called since the user last spoke (same name, equal
    arguments once parsed, so spacing and key order do not matter)."""
    wanted = _parsed(arguments)
    for msg in reversed(messages):
        role = msg.get("role")
        if role == "user":
            return False
        if role == "assistant":
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") or {}
                if fn.get("name") == name and _parsed(fn.get("arguments", "{}")) == wanted:
                    return True
    return False


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _conversation_text(messages: Sequence[dict[str, Any]]) -> str:
    return " ".join(content_text(m.get("content")) for m in messages)


# Words that ground nothing: the model fills a contact it does not know with "You", "your
# name" or "your_email@example.com" (bench/tool_use.py), and "your" is in most requests.
_FILLER = frozenset({"a", "an", "the", "my", "your", "you", "me", "i", "it", "to", "of", "for",
                     "and", "at", "in", "on", "user", "name", "contact", "example", "com",
                     "email", "here"})


def _string_grounded(value: str, words: set[str], squashed: str) -> bool:
    all_tokens = [w for w in _words(value) if len(w) > 1 or w.isdigit()]
    tokens = [w for w in all_tokens if w not in _FILLER]
    if not tokens:
        return not all_tokens  # "" or punctuation: nothing to check; only filler: made up
    # a word of the value was said ("Oslo", "pasta"), or the value with its spacing and
    # punctuation dropped appears in what was said ("B-772" for "b772", "A 1 2 3 4" for "A1234")
    return any(t in words for t in tokens) or "".join(tokens) in squashed


_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20,
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "hundred": 100, "thousand": 1000,
}


def _number_grounded(value: float, words: set[str]) -> bool:
    said = {float(w) for w in words if w.isdigit()} | {float(n) for w, n in _NUMBER_WORDS.items()
                                                        if w in words}
    return float(value) in said


def _user_turns(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("role") in ("system", "user")]


def grounded(name: str, arguments: str, tools: Sequence[ToolSpec],
             messages: Sequence[dict[str, Any]]) -> bool:
    """Whether a call's required arguments come from the conversation.

    The 0.5B default, given tools, calls one for almost anything, with values it makes up:
    `get_weather(city="London")` for "How are you today?", `lookup_order("123")` for "Who wrote
    Romeo and Juliet?" (bench/tool_use.py, the baseline run). A value the user asked about is
    in the conversation (the user's words, a result, the instructions); one the model invented
    is not. Required strings without an enum are checked; numbers are not (they are said as
    words or units: "an hour" for 60 minutes), nor enums and optional fields.

    Right after a tool result the bar is higher, since the model was seen to answer a result
    with another call more often than not (set_timer(30) after a weather report, a
    send_message of the answer to a made-up contact): the values must come from the user's
    own turns or the instructions, numbers included."""
    spec = next((t for t in tools if t.name == name), None)
    args = _parsed(arguments)
    if spec is None or not isinstance(args, dict):
        return True
    props = (spec.parameters or {}).get("properties") or {}
    required = (spec.parameters or {}).get("required") or []
    after = after_tool_result(messages)
    said = _words(_conversation_text(_user_turns(messages) if after else messages))
    words, squashed = set(said), "".join(said)
    for key in required:
        schema = props.get(key) or {}
        value = args.get(key)
        if "enum" in schema:
            continue
        if schema.get("type") == "string" and isinstance(value, str):
            if not _string_grounded(value, words, squashed):
                return False
        elif after and schema.get("type") in ("integer", "number") \
                and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not _number_grounded(value, words):
                return False
    return True
