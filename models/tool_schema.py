"""Tool calling by JSON-schema constrained decoding, shared by the LLM engines.

Small local models do not emit native tool calls reliably, so instead of asking for them we
constrain the whole answer to one JSON object that either speaks or calls one tool:

    {"type": "message", "text": "..."}
    {"type": "<tool name>", "arguments": {...}}

"type" comes first so the say-or-call decision is the first thing decoded, and the message text is
streamed to TTS while it decodes (`JsonStringFieldExtractor`). The decision token is the tool's own
name rather than a generic "function_call" followed by a name: measured on Qwen2.5-Coder-0.5B
(temperature 0.2 and 0.8, weather / timer / chit-chat prompts), the generic form called the tool for
about half of the requests that needed it and invented answers otherwise; deciding on the name
called it 6/6 times and never for chit-chat.

This module also renders the tools into the system prompt and rewrites OpenAI-style tool turns
(assistant `tool_calls`, role "tool") as plain text turns in the same JSON shape, so every chat
template accepts them and the model sees its earlier calls in the format it is asked to produce.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .base import ToolSpec
from .context_window import TOOL_RESULT, without_marks

# Keys of the constrained answer object.
TYPE_MESSAGE = "message"


def uses_tools(tools: Sequence[ToolSpec], tool_choice: str) -> bool:
    """True when the request should be decoded with the say-or-call schema. That includes
    tool_choice "none" (the schema then only allows speaking): its history holds earlier calls in
    the JSON shape, and unconstrained, the 0.5B model was seen to copy one as its spoken answer."""
    del tool_choice
    return bool(tools)


def _speaks(tool_choice: str) -> bool:
    return tool_choice in ("auto", "none", "")


def _selected_tools(tools: Sequence[ToolSpec], tool_choice: str) -> list[ToolSpec]:
    if tool_choice == "none":
        return []
    if tool_choice in ("auto", "required", ""):
        return list(tools)
    forced = [t for t in tools if t.name == tool_choice]
    if not forced:
        raise ValueError(f"tool_choice names {tool_choice!r}, which is not among the request's tools")
    return forced


def answer_schema(tools: Sequence[ToolSpec], tool_choice: str = "auto", *,
                  strict_arguments: bool = True) -> dict[str, Any]:
    """JSON schema for one answer: a message or a call to one of `tools`.

    One anyOf branch per tool (its name as the "type" const), so the arguments are checked against
    that tool's own parameter schema. "required" or a forced tool name drops the message branch.
    `strict_arguments=False` loosens every tool's arguments to a plain object, for grammar engines
    that reject a tool's parameter schema.
    """
    branches: list[dict[str, Any]] = []
    if _speaks(tool_choice):
        branches.append({
            "type": "object",
            "properties": {"type": {"const": TYPE_MESSAGE}, "text": {"type": "string"}},
            "required": ["type", "text"],
            "additionalProperties": False,
        })
    for tool in _selected_tools(tools, tool_choice):
        params = tool.parameters if strict_arguments and tool.parameters else {"type": "object"}
        branches.append({
            "type": "object",
            "properties": {"type": {"const": tool.name}, "arguments": params},
            "required": ["type", "arguments"],
            "additionalProperties": False,
        })
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def parse_answer(raw: str) -> tuple[str, str, str]:
    """Parse a finished constrained answer into ("message", text, "") or ("tool_call", name, arguments_json)."""
    obj = json.loads(raw)
    kind = obj.get("type")
    if kind == TYPE_MESSAGE:
        return "message", str(obj.get("text", "")), ""
    return "tool_call", str(kind), json.dumps(obj.get("arguments", {}), ensure_ascii=False)


def tools_prompt(tools: Sequence[ToolSpec], tool_choice: str = "auto") -> str:
    """Text appended to the system prompt so the model knows the tools and the answer format."""
    selected = _selected_tools(tools, tool_choice)
    speak = _speaks(tool_choice)
    lines = ["", "# Tools", "You have these functions:" if selected else
             "You may not call functions now; answer from what you know and the results above."]
    for tool in selected:
        lines.append(f"- {tool.name}: {tool.description.strip()}  "
                     f"Parameters (JSON schema): {json.dumps(tool.parameters, ensure_ascii=False)}")
    lines += ["", "Reply with exactly one JSON object, in one of these forms:"]
    for tool in selected:
        lines.append(f'- {{"type": "{tool.name}", "arguments": {{...}}}} to call {tool.name}')
    if speak:
        lines.append('- {"type": "message", "text": "<your spoken reply>"} to speak to the user')
    if speak and selected:
        # Measured: without these two sentences the 0.5B model invents weather reports instead of
        # calling, and calls the same function again after its result arrives.
        lines.append("You do not know live facts (weather, time, news) and cannot act by yourself: if a "
                     "function can answer or do what the user asks, call it. Never invent what a function "
                     "would return.")
    if speak:
        lines.append("After a function result arrives, tell the user the answer in a message; do not call "
                     "the same function again for it.")
    return "\n".join(lines)


def check_tool_names(tools: Sequence[ToolSpec]) -> None:
    """Tool names double as the answer's "type" value, so "message" is reserved."""
    for tool in tools:
        if tool.name == TYPE_MESSAGE:
            raise ValueError(f'a tool may not be named "{TYPE_MESSAGE}": it is the spoken-answer type')


def content_text(content: Any) -> str:
    # OpenAI content may be a list of parts; keep only the text parts.
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def flatten_tool_turns(messages: Sequence[dict[str, Any]], keep_marks: bool = False
                       ) -> list[dict[str, Any]]:
    """Rewrite tool traffic as plain system/user/assistant text turns.

    assistant + tool_calls -> assistant text holding the call(s) in the constrained JSON shape
    (several calls in one turn become one JSON object per line);
    role "tool" -> a user turn "Result of <name>: <content>" (consecutive results merged, since
    several templates reject two user turns in a row). `keep_marks`: such a turn keeps the
    `TOOL_RESULT` key, so that fitting the context knows it is not the user speaking.
    """
    out: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}  # tool_call_id -> function name, to label results
    for msg in messages:
        role = msg.get("role")
        if role == "assistant" and msg.get("tool_calls"):
            parts = []
            text = content_text(msg.get("content"))
            if text:
                parts.append(json.dumps({"type": TYPE_MESSAGE, "text": text}, ensure_ascii=False))
            for call in msg["tool_calls"]:
                fn = call.get("function", {})
                name = fn.get("name", "")
                call_names[call.get("id", "")] = name
                raw = fn.get("arguments", "{}")
                try:
                    args = json.loads(raw) if isinstance(raw, str) else raw
                except json.JSONDecodeError:
                    args = raw
                parts.append(json.dumps({"type": name, "arguments": args}, ensure_ascii=False))
            out.append({"role": "assistant", "content": "\n".join(parts)})
        elif role == "tool":
            name = msg.get("name") or call_names.get(msg.get("tool_call_id", ""), "the function")
            text = f"Result of {name}: {content_text(msg.get('content'))}"
            if out and out[-1]["role"] == "user" and out[-1].get(TOOL_RESULT):
                out[-1]["content"] += "\n" + text
            else:
                out.append({"role": "user", "content": text, TOOL_RESULT: True})
        else:
            out.append({"role": role, "content": content_text(msg.get("content"))})
    return out if keep_marks else without_marks(out)


def prepare_messages(messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec] = (),
                     tool_choice: str = "auto", keep_marks: bool = False) -> list[dict[str, Any]]:
    """Messages ready for a plain chat template: tool turns flattened, tools described in the system prompt.

    The tool block goes at the end of the first system message: a prefix cache keyed on tokens keeps
    reusing everything before it, so warming the bare system prompt still pays off.
    """
    out = flatten_tool_turns(messages, keep_marks)
    if not uses_tools(tools, tool_choice):
        return out
    check_tool_names(tools)
    block = tools_prompt(tools, tool_choice)
    if out and out[0]["role"] == "system":
        out[0] = {"role": "system", "content": out[0]["content"] + "\n" + block}
    else:
        out.insert(0, {"role": "system", "content": block.lstrip("\n")})
    return out


_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class JsonStringFieldExtractor:
    """Incrementally pull one top-level string field out of a JSON object as it is generated.

    Feed raw output chunks; each `feed` returns the newly decoded characters of the field's value
    (escapes resolved, `\\uXXXX` surrogate pairs joined even when split across chunks). Anything
    else (other keys, nested objects/arrays, numbers) is skipped. Only the first occurrence of the
    field at depth 1 is extracted.
    """

    def __init__(self, field: str = "text") -> None:
        self.field = field
        self._depth = 0  # nesting depth of {} / []
        self._in_string = False
        self._string_is_key = False  # the current string at depth 1 is an object key
        self._capturing = False  # the current string is the wanted field's value
        self._escape = ""  # pending escape sequence, "" when none ("\\" or "\\uXXX" partial)
        self._high_surrogate: int | None = None
        self._buf: list[str] = []  # current key's characters
        self._last_key: str | None = None
        self._expect_value = False  # a ':' after a depth-1 key was seen
        self._done = False
        self.value_complete = False

    def feed(self, chunk: str) -> str:
        out: list[str] = []
        for ch in chunk:
            if self._in_string:
                self._string_char(ch, out)
                continue
            if ch == '"':
                self._in_string = True
                self._string_is_key = self._depth == 1 and not self._expect_value
                self._capturing = (self._depth == 1 and self._expect_value and self._last_key == self.field
                                   and not self._done)
                self._buf = []
            elif ch in "{[":
                self._depth += 1
                if self._depth == 2:
                    self._expect_value = False  # a nested value: its contents are not ours
            elif ch in "}]":
                self._depth -= 1
            elif ch == ":" and self._depth == 1:
                self._expect_value = True
            elif ch == "," and self._depth == 1:
                self._expect_value = False
        return "".join(out)

    def _emit(self, text: str, out: list[str]) -> None:
        if self._capturing:
            out.append(text)
        elif self._string_is_key:
            self._buf.append(text)

    def _string_char(self, ch: str, out: list[str]) -> None:
        if self._escape:
            self._escape += ch
            if self._escape.startswith("\\u"):
                if len(self._escape) < 6:
                    return
                code = int(self._escape[2:], 16)
                self._escape = ""
                if 0xD800 <= code < 0xDC00:  # high surrogate: wait for its pair
                    self._high_surrogate = code
                    return
                if 0xDC00 <= code < 0xE000 and self._high_surrogate is not None:
                    code = 0x10000 + ((self._high_surrogate - 0xD800) << 10) + (code - 0xDC00)
                self._high_surrogate = None
                self._emit(chr(code), out)
                return
            self._escape = ""
            self._emit(_SIMPLE_ESCAPES.get(ch, ch), out)
            return
        if ch == "\\":
            self._escape = "\\"
            return
        if ch == '"':
            self._in_string = False
            if self._string_is_key:
                self._last_key = "".join(self._buf)
            elif self._capturing:
                self._capturing = False
                self._done = True
                self.value_complete = True
            if self._depth == 1 and not self._string_is_key:
                self._expect_value = False
            return
        self._emit(ch, out)
