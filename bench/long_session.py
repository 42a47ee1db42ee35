"""Long-session benchmark: a 50-turn typed conversation against the CPU LLM engine, in process.

    .venv/bin/python -m bench.long_session                      # 50 turns, 48-token answers
    .venv/bin/python -m bench.long_session --turns 12 --n-ctx 1024

It checks the claim that a conversation longer than the context still gets an answer on every turn
with a bounded prefill: the engine is built as the server builds it (`models.factory.build_llm`
with default options, greedy), the conversation is kept in the session's own `Conversation` and
sent as `chat_messages` renders it, with the session's default system prompt warmed first. A few
turns need a tool: the function call and a canned result go into the conversation as a client that
runs the function adds them (`conversation.item.create`), and the answer to the result is asked
for, so tool results sit in the history as they do in a real session.

The tools are not offered to the model by default: measured on the packaged 0.5B model with them
on every request (`--tools`, three tools or one), once a call is in the history it calls a tool on
nearly every later turn, chit-chat included, and calls again after the result, so the
conversation stops being one a user would have. `--tools` runs that mode anyway.

Per LLM request it records the prompt and cached tokens the engine reports, the time to the first
delta (the prefill and one decoded token; with `--tools`, also the ~10 tokens of
`{"type": "message", "text": "` before any text), how many messages the fitting dropped, and whether the system prompt, the latest user
message and the tool results that followed it were in the prompt llama.cpp received. What was
received is read off the engine's embedded server (a recording proxy on its private `_server`):
the point is to check the engine, so the bench does not recompute the fitting itself.

Reproducibility: the engine's `seed` option also turns the prompt cache off (see
`LlamaCppEngine`), which would make every turn a full prefill, so the default run is greedy
(`temperature: 0`) without a seed. Greedy answers can still part from one run to the next where a
cached prefix flips a near tie; the fitting and the cache figures do not depend on the words.

Writes report.json (every request) and report.md to --out (bench/results/long-session).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from voxserve.bench.report import environment, pct
from voxserve.config import DEFAULT_SYSTEM_PROMPT, LlmOptions
from voxserve.models.base import ChatRequest, LlmEngine, ToolSpec
from voxserve.models.tool_schema import prepare_messages
from voxserve.protocol.items import ContentPart, Item
from voxserve.session.conversation import Conversation

OUT = Path(__file__).resolve().parent / "results" / "long-session"

TOOLS = (
    ToolSpec("get_weather", "Get the current weather for a city.",
             {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    ToolSpec("set_timer", "Start a countdown timer.",
             {"type": "object", "properties": {"minutes": {"type": "number"},
                                               "label": {"type": "string"}},
              "required": ["minutes"]}),
    ToolSpec("find_train", "Find the next trains between two stations.",
             {"type": "object", "properties": {"origin": {"type": "string"},
                                               "destination": {"type": "string"}},
              "required": ["origin", "destination"]}),
)

# What a client would answer each tool with.
RESULTS = {
    "get_weather": '{"temp_c": 14, "sky": "light rain", "wind_kmh": 22}',
    "set_timer": '{"ok": true, "ends_at": "18:42"}',
    "find_train": '{"trains": [{"departs": "09:12", "arrives": "11:47", "platform": 4}, '
                  '{"departs": "10:12", "arrives": "12:51", "platform": 2}]}',
}

_NOTES = (
    "Here are my notes from the planning call, can you keep them in mind? We fly to Lisbon on the "
    "fourteenth and stay four nights in Alfama, then take the train north to Porto for three more. "
    "Maria wants one day at the beach in Cascais, Tom does not care about beaches but wants to see "
    "the tile museum and eat at a proper tasca. The budget is about two thousand euros for the "
    "whole trip, flights already paid. Nobody wants to rent a car. We need to be back by the "
    "twenty-second because Tom has an exam on the twenty-third, and Maria's sister might join us "
    "in Porto for the weekend if her shifts allow it, which we will only know next Friday."
)
_RECIPE = (
    "I found this recipe and I am not sure about it: two hundred grams of dried chickpeas soaked "
    "overnight, an onion, four cloves of garlic, a tin of tomatoes, a teaspoon each of cumin and "
    "smoked paprika, a bunch of spinach and a squeeze of lemon at the end. It says to simmer the "
    "chickpeas for ninety minutes before anything else, then fry the onion and garlic, add the "
    "spices and tomatoes, cook it down for twenty minutes, stir in the chickpeas and the spinach "
    "and serve with bread. I have canned chickpeas instead of dried ones, no smoked paprika, only "
    "the sweet kind, and frozen spinach. Will it still work, and what would you change?"
)
_EMAIL = (
    "Can you tell me if this email sounds too harsh before I send it? 'Hi Daniel, thanks for the "
    "draft. I went through it twice and I think the second section needs a lot more work: the "
    "numbers in the table do not match the ones in the summary, two of the charts have no axis "
    "labels, and the conclusion promises things the data does not show. I know the deadline is "
    "tight, but I would rather we send it a week late than send it like this. Could you fix the "
    "table first and send me that part by Wednesday? Then we can go over the rest together on "
    "Thursday afternoon. Best, Sam.'"
)
_REVIEW = (
    "A friend sent me this about a place in Porto, what do you make of it? 'We went to the little "
    "restaurant behind the market on a Tuesday night and it was packed with locals, which is always "
    "a good sign. There is no menu, the owner just tells you what the kitchen made that day. We had "
    "grilled sardines, a rice dish with duck that was the best thing I ate all week, and a plate of "
    "cheese from the mountains with quince paste. The house wine comes in a jug and costs almost "
    "nothing. Service is slow and nobody speaks much English, but they were patient with us and "
    "drew a map to a bar down the street when we asked. Go early, before eight, or you will wait "
    "outside for an hour, and bring cash because the card machine was broken both times we went.'"
)
_FRIEND = (
    "Maria just messaged the group and I do not know how to answer her: 'I have been thinking "
    "about the beach day again. I know Tom is not keen and the weather might be bad, but it is the "
    "one thing I really wanted from this trip. Could we at least keep a morning free in Cascais "
    "and decide the night before? If it rains I am happy to do the museum instead, and I will not "
    "complain about the tasca either, I promise. Also, my sister says she can probably come on "
    "Saturday but she would need to sleep on our sofa for two nights, is that okay with everyone? "
    "She will pay her share of the food and she knows Porto well, she lived there for a year, so "
    "she could show us around.' What do you think is fair to everyone?"
)
_PLAN = (
    "Here is the draft plan Tom wrote, tell me if anything looks wrong: 'Day one, land at noon, "
    "drop bags in Alfama, walk up to the castle and have dinner nearby. Day two, the tile museum "
    "in the morning, Belem in the afternoon for the tower and the pastries, back by tram. Day "
    "three, Sintra by train, two palaces, back late. Day four, free morning, Cascais if the weather "
    "is good, otherwise the aquarium, evening fado. Day five, the morning train to Porto, check in, "
    "walk along the river and cross the bridge at sunset. Day six, a port cellar tour, the "
    "bookshop, the market. Day seven, day trip up the Douro valley by train. Day eight, train back "
    "to Lisbon early and fly home.' I think he forgot the exam, and maybe Sintra is too much."
)
_PACKING = (
    "Last thing, here is my packing list, is anything missing for a week in Portugal in spring? "
    "Passport, the train tickets printed, two pairs of jeans, one pair of light trousers, five "
    "t-shirts, a warm jumper, a rain jacket, a swimsuit in case the beach happens, comfortable "
    "walking shoes and sandals, a small umbrella, a power bank, the phone charger and a European "
    "plug adapter, sunglasses, sunscreen, a reusable water bottle, a tote bag for the market, a "
    "paperback for the train, earplugs because Alfama is noisy at night, painkillers and plasters "
    "for Maria's knee, a little cash in euros, and the travel insurance papers in my email."
)

Call = tuple[str, dict[str, Any]]  # a tool's name and arguments

# Typed user turns of a long, meandering session: short questions, follow-ups, pasted text, and a
# few that need a tool (with the call the client's tool makes). Reused from the start when --turns
# asks for more.
SCRIPT: tuple[tuple[str, Call | None], ...] = (
    ("Hi! I'm planning a trip with two friends and I'd like some help over the next hour.", None),
    (_NOTES, None),
    ("What's the weather like in Lisbon right now?", ("get_weather", {"city": "Lisbon"})),
    ("Okay. Should we pack umbrellas then, or is that overkill for April?", None),
    ("Which neighbourhood did I say we are staying in?", None),
    ("Is that area hilly? Maria has a bad knee.", None),
    ("Find me the trains from Lisbon to Porto.", ("find_train", {"origin": "Lisbon", "destination": "Porto"})),
    ("The first one sounds good. How long is that ride?", None),
    (_REVIEW, None),
    ("Tom is vegetarian, by the way. Does that change your answer?", None),
    ("Set a timer for 10 minutes, I need to take the bread out of the oven.",
     ("set_timer", {"minutes": 10, "label": "bread"})),
    ("Thanks. While I wait, how do I know when bread is done?", None),
    (_RECIPE, None),
    ("And how long does the whole thing take with canned chickpeas?", None),
    ("Could I make it the day before and reheat it?", None),
    ("Back to the trip. Is two thousand euros realistic for seven nights for three people?", None),
    ("What's a tasca, exactly?", None),
    ("Give me one day trip from Porto that isn't a beach.", None),
    ("How far is that by train?", None),
    (_FRIEND, None),
    ("What's the weather in Porto?", ("get_weather", {"city": "Porto"})),
    ("Fine, we'll decide on the day. What's the tile museum called in Lisbon?", None),
    ("Do they close on any weekday?", None),
    ("What time do restaurants usually open for dinner there?", None),
    ("That is late for us. Any tips for eating earlier without ending up in tourist traps?", None),
    (_EMAIL, None),
    ("Make it a bit warmer but keep the Wednesday deadline.", None),
    ("Actually, should I call him instead of emailing?", None),
    ("Okay, I'll call. What should I say first so he doesn't get defensive?", None),
    ("Set a timer for 25 minutes labelled call Daniel.", ("set_timer", {"minutes": 25, "label": "call Daniel"})),
    ("Now, Maria's sister. If she joins in Porto, should we book a bigger apartment now or wait?", None),
    ("What's a polite way to ask her to decide by Friday?", None),
    ("How do you say thank you in Portuguese?", None),
    ("And is it different for a man and a woman?", None),
    ("What other five words should we learn before we go?", None),
    (_PLAN, None),
    ("Is tipping expected in restaurants?", None),
    (_PACKING, None),
    ("Find the trains from Porto back to Lisbon.", ("find_train", {"origin": "Porto", "destination": "Lisbon"})),
    ("We fly home from Lisbon on the twenty-second in the morning. Which train works best?", None),
    ("Should we spend the last night near the airport instead?", None),
    ("Remind me, when is Tom's exam?", None),
    ("Can you summarise the plan so far in a few sentences?", None),
    ("What did we decide about umbrellas?", None),
    ("What's the weather in Cascais?", ("get_weather", {"city": "Cascais"})),
    ("Then the beach day might not happen. Any indoor alternative near Cascais?", None),
    ("Last thing on food: is there a dish in Lisbon I should absolutely not miss?", None),
    ("And a pastry?", None),
    ("Great. How early should we get to the airport on the way out?", None),
    ("Thanks for all of this, that was really helpful.", None),
)


@dataclass
class Request:
    """One LLM request of the session (a user turn, or the answer after a tool result)."""

    turn: int
    kind: str  # "user" | "tool_result"
    user_chars: int
    asks_tool: bool  # the script meant this turn to need a tool
    conversation_messages: int  # messages the session sent, tool turns flattened
    sent_messages: int = 0  # messages llama.cpp received
    dropped_messages: int = 0
    system_kept: bool = False
    latest_kept: bool = False  # the latest user message and everything after it, unchanged
    tool_results_in_conversation: int = 0
    tool_results_sent: int = 0
    tail_tool_result_kept: bool | None = None  # the result this request answers (tool_result only)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    first_delta_ms: float | None = None
    total_ms: float = 0.0
    finish_reason: str = ""
    tool_call: str = ""
    answer: str = ""
    error: str = ""

    @property
    def prefilled_tokens(self) -> int:
        return self.prompt_tokens - self.cached_tokens


class _RecordingServer:
    """The engine's embedded llama.cpp server, recording the messages of every request body: what
    was really sent, after the engine's fitting."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self.sent: list[list[dict[str, Any]]] = []

    def handle_chat_completions(self, body: dict[str, Any], callback: Any) -> Any:
        self.sent.append(list(body["messages"]))
        return self._server.handle_chat_completions(body, callback)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def record_sent(engine: Any) -> _RecordingServer:
    """Wrap a `LlamaCppEngine`'s server (private: the engine has no public view of the prompt it
    sends, and a benchmark should not need one)."""
    recorder = _RecordingServer(engine._server)
    engine._server = recorder
    return recorder


def _is_tool_result(message: dict[str, Any]) -> bool:
    return message["role"] == "user" and message["content"].startswith("Result of ")


def _check(record: Request, prepared: list[dict[str, Any]], sent: list[dict[str, Any]]) -> None:
    """Compare what llama.cpp received with what the session sent (both flattened)."""
    record.sent_messages = len(sent)
    record.dropped_messages = len(prepared) - len(sent)
    record.system_kept = bool(sent) and sent[0] == prepared[0]
    # The engine flattens a tool result into a user turn, so "the latest user message" is the
    # last one the session typed or spoke, and what follows it (a call, its result) must follow.
    typed = [i for i, m in enumerate(prepared) if m["role"] == "user" and not _is_tool_result(m)]
    tail = prepared[typed[-1]:] if typed else prepared[-1:]
    record.latest_kept = sent[len(sent) - len(tail):] == tail
    record.tool_results_in_conversation = sum(_is_tool_result(m) for m in prepared)
    record.tool_results_sent = sum(_is_tool_result(m) for m in sent)
    if record.kind == "tool_result":
        record.tail_tool_result_kept = bool(sent) and sent[-1] == prepared[-1]


class LongSession:
    """One session's conversation, driven turn by turn against an engine."""

    def __init__(self, engine: LlmEngine, recorder: _RecordingServer, *, answer_tokens: int,
                 system_prompt: str = DEFAULT_SYSTEM_PROMPT,
                 tools: tuple[ToolSpec, ...] = ()) -> None:
        self.engine = engine
        self.recorder = recorder
        self.answer_tokens = answer_tokens
        self.system_prompt = system_prompt
        self.tools = tools
        self.conversation = Conversation()
        self.records: list[Request] = []
        self._ids = 0

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}_{self._ids:04d}"

    def _add_message(self, role: str, part: ContentPart) -> None:
        self.conversation.add(Item(id=self._id("item"), type="message", role=role, content=[part]))  # type: ignore[arg-type]

    async def _request(self, turn: int, kind: str, user_chars: int, asks_tool: bool) -> Request:
        messages = await self.conversation.chat_messages(self.system_prompt)
        prepared = prepare_messages(messages, self.tools, "auto")
        record = Request(turn=turn, kind=kind, user_chars=user_chars, asks_tool=asks_tool,
                         conversation_messages=len(prepared))
        request = ChatRequest(messages=messages, tools=self.tools, tool_choice="auto",
                              temperature=0.0, max_tokens=self.answer_tokens,
                              request_id=f"turn{turn}-{kind}")
        before = len(self.recorder.sent)
        text: list[str] = []
        started = time.perf_counter()
        try:
            async for delta in self.engine.stream(request):
                if record.first_delta_ms is None:
                    record.first_delta_ms = (time.perf_counter() - started) * 1000
                if delta.kind == "text":
                    text.append(delta.text)
                elif delta.kind == "tool_call":
                    record.tool_call = json.dumps({"name": delta.name, "arguments": delta.arguments})
                else:
                    record.prompt_tokens, record.cached_tokens = delta.prompt_tokens, delta.cached_tokens
                    record.completion_tokens = delta.completion_tokens
                    record.finish_reason = delta.finish_reason
        except Exception as exc:  # a failed turn is what this benchmark counts, not a crash
            record.error = f"{type(exc).__name__}: {exc}"
        record.total_ms = (time.perf_counter() - started) * 1000
        record.answer = "".join(text).strip()
        sent = self.recorder.sent[before:]
        if sent:
            _check(record, prepared, sent[-1])  # a schema retry resends: the last one counts
        elif not record.error:
            record.error = "no request reached llama.cpp"
        self.records.append(record)
        return record

    def _add_call(self, name: str, arguments: str) -> None:
        """A function call and its result, as the session holds them once the client answered."""
        call_id = self._id("call")
        self.conversation.add(Item(id=self._id("item"), type="function_call", call_id=call_id,
                                   name=name, arguments=arguments))
        self.conversation.add(Item(id=self._id("item"), type="function_call_output",
                                   call_id=call_id, output=RESULTS.get(name, "{}")))

    async def turn(self, index: int, text: str, call: Call | None = None) -> list[Request]:
        """The user types `text`; the answer (and after a tool call, the answer to its result) is
        added to the conversation as the session adds what it spoke.

        With tools offered, a call is the model's own. Without, a turn that needs a tool gets the
        call `call` straight away, as a client that runs the function itself adds it with
        `conversation.item.create`, and the answer to its result is asked for."""
        self._add_message("user", ContentPart(type="input_text", text=text))
        done: list[Request] = []
        if self.tools or call is None:
            done.append(await self._request(index, "user", len(text), call is not None))
            if done[-1].tool_call:
                made = json.loads(done[-1].tool_call)
                self._add_call(made["name"], made["arguments"])
                done.append(await self._request(index, "tool_result", 0, False))
        else:
            self._add_call(call[0], json.dumps(call[1]))
            done.append(await self._request(index, "tool_result", len(text), True))
        if done[-1].answer:
            self._add_message("assistant", ContentPart(type="audio", transcript=done[-1].answer))
        return done


def build_engine(n_ctx: int, seed: int | None = None) -> tuple[LlmEngine, _RecordingServer]:
    """The server's default LLM (`build_llm` on default options) with greedy decoding."""
    from voxserve.models.factory import build_llm

    engine = build_llm(LlmOptions(n_ctx=n_ctx, temperature=0.0, seed=seed))
    return engine, record_sent(engine)


async def run(engine: LlmEngine, recorder: _RecordingServer, turns: int, answer_tokens: int,
              *, tools: tuple[ToolSpec, ...] = (), script: tuple[tuple[str, Call | None], ...] = SCRIPT,
              progress: bool = True) -> LongSession:
    session = LongSession(engine, recorder, answer_tokens=answer_tokens, tools=tools)
    await engine.warm([{"role": "system", "content": session.system_prompt}])  # as a session does
    for i in range(turns):
        text, call = script[i % len(script)]
        for r in await session.turn(i + 1, text, call):
            if progress:
                print(_progress_line(r, turns), flush=True)
    return session


def _progress_line(r: Request, turns: int) -> str:
    first = f"{r.first_delta_ms / 1000:.1f} s" if r.first_delta_ms is not None else "-"
    what = (f"tool call {r.tool_call}" if r.tool_call
            else f"{r.completion_tokens} tok {r.finish_reason}")
    line = (f"[long-session] turn {r.turn}/{turns} {r.kind:<11} prompt {r.prompt_tokens:>4} "
            f"(cached {r.cached_tokens:>4}, prefilled {r.prefilled_tokens:>4}) first {first:>7}; "
            f"sent {r.sent_messages}/{r.conversation_messages} msgs; {what}")
    return line + (f"; ERROR {r.error}" if r.error else "")


def reused(r: Request, before: Request | None) -> bool:
    """The request took the whole prompt of the one before it from the slot's KV cache (less a
    few tokens: llama.cpp evaluates a fully cached prompt's last token again), so it prefilled only
    what was new. After the fitting's cut moves, the prompt shares only the system prompt with the
    one before and is prefilled again."""
    if before is None or before.error:
        return r.cached_tokens > 0  # the warmed system prompt
    return r.cached_tokens >= before.prompt_tokens - 16


def _pairs(records: list[Request]) -> list[tuple[Request | None, Request]]:
    return list(zip([None, *records[:-1]], records, strict=True))


def summarise(records: list[Request], n_ctx: int, answer_tokens: int) -> dict[str, Any]:
    ok = [r for r in records if not r.error]
    first = [r.first_delta_ms for r in ok if r.first_delta_ms is not None]
    return {
        "requests": len(records), "user_turns": len({r.turn for r in records}),
        "failures": [{"turn": r.turn, "kind": r.kind, "error": r.error} for r in records if r.error],
        "first_delta_ms": {**pct(first), "max": round(max(first), 1) if first else None},
        "prompt_tokens": {**pct([r.prompt_tokens for r in ok]),
                          "max": max((r.prompt_tokens for r in ok), default=0),
                          "limit": n_ctx - answer_tokens},
        "prefilled_tokens": {**pct([r.prefilled_tokens for r in ok]),
                             "max": max((r.prefilled_tokens for r in ok), default=0),
                             "total": sum(r.prefilled_tokens for r in ok)},
        "reused_cache": sum(reused(r, b) for b, r in _pairs(records) if not r.error),
        "re_prefilled": [{"turn": r.turn, "prefilled": r.prefilled_tokens,
                          "first_delta_ms": r.first_delta_ms}
                         for b, r in _pairs(records) if not r.error and not reused(r, b)],
        "fitted": sum(r.dropped_messages > 0 for r in ok),
        "cut_moved": [r.turn for b, r in _pairs(records)
                      if r.dropped_messages > (b.dropped_messages if b else 0)],
        "system_kept": f"{sum(r.system_kept for r in ok)}/{len(ok)}",
        "latest_kept": f"{sum(r.latest_kept for r in ok)}/{len(ok)}",
        "tool_results_answered": sum(r.kind == "tool_result" for r in ok),
        "model_tool_calls": sum(bool(r.tool_call) for r in ok),
        "model_calls_on_chat_turns": sum(bool(r.tool_call) for r in ok if not r.asks_tool),
        "tail_tool_result_kept": f"{sum(r.tail_tool_result_kept is True for r in ok)}/"
                                 f"{sum(r.kind == 'tool_result' for r in ok)}",
        "older_tool_results_dropped": max((r.tool_results_in_conversation - r.tool_results_sent
                                           for r in ok), default=0),
    }


def markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    f, p, q = s["first_delta_ms"], s["prompt_tokens"], s["prefilled_tokens"]
    failures = ", ".join(f"turn {x['turn']} ({x['error'][:80]})" for x in s["failures"]) or "none"
    sec = lambda ms: f"{ms / 1000:.1f} s" if ms is not None else "-"  # noqa: E731
    return "\n".join([
        "# Long-session benchmark", "",
        f"{s['user_turns']} typed user turns ({s['requests']} LLM requests, "
        f"{s['tool_results_answered']} of them answering a canned tool result) against `{report['model']}` in process: n_ctx "
        f"{report['n_ctx']}, answers capped at {report['answer_tokens']} tokens, greedy, "
        f"tools: {report['tools']}; {report['wall_s']:.0f} s wall on "
        f"{report['env']['cpus']} CPUs.", "",
        f"- failures: {failures}",
        *([f"- tool calls by the model: {s['model_tool_calls']}, {s['model_calls_on_chat_turns']} "
           "of them on turns that needed no tool"] if s["model_tool_calls"] else []),
        f"- time to first delta: p50 {sec(f.get('p50'))}, p95 {sec(f.get('p95'))}, "
        f"max {sec(f.get('max'))}",
        f"- prompt tokens: p50 {p.get('p50', '-')}, max {p['max']} (context less answer: "
        f"{p['limit']})",
        f"- prefilled tokens (prompt less cached): p50 {q.get('p50', '-')}, p95 {q.get('p95', '-')}, "
        f"max {q['max']}, {q['total']} in all",
        f"- requests that took the whole previous prompt from the KV cache: {s['reused_cache']}; "
        f"prefilled again: {len(s['re_prefilled'])} ("
        + ", ".join(f"turn {x['turn']}: {x['prefilled']} tokens in {sec(x['first_delta_ms'])}"
                    for x in s["re_prefilled"]) + ")",
        f"- history dropped on {s['fitted']} requests; the cut moved at turns "
        f"{', '.join(map(str, s['cut_moved'])) or '-'}",
        f"- system prompt in the sent prompt: {s['system_kept']}; latest user message and what "
        f"follows it: {s['latest_kept']}; the tool result being answered: "
        f"{s['tail_tool_result_kept']}; older tool results dropped with their history (most at "
        f"once): {s['older_tool_results_dropped']}", "",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=50)
    ap.add_argument("--answer-tokens", type=int, default=48)
    ap.add_argument("--n-ctx", type=int, default=LlmOptions().n_ctx)
    ap.add_argument("--seed", type=int, default=None,
                    help="fix the seed (turns the prompt cache off: every turn a full prefill)")
    ap.add_argument("--tools", action="store_true",
                    help="offer the three tools on every request and let the model call them")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    print(f"[long-session] loading the LLM (n_ctx {args.n_ctx})", flush=True)
    engine, recorder = build_engine(args.n_ctx, args.seed)
    started = time.monotonic()
    try:
        session = asyncio.run(run(engine, recorder, args.turns, args.answer_tokens,
                                  tools=TOOLS if args.tools else ()))
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    records = session.records
    report = {
        "env": environment(), "model": LlmOptions().model, "n_ctx": args.n_ctx,
        "answer_tokens": args.answer_tokens, "seed": args.seed,
        "tools": "offered on every request" if args.tools else "scripted calls, none offered",
        "wall_s": round(time.monotonic() - started, 1),
        "summary": summarise(records, args.n_ctx, args.answer_tokens),
        "requests": [{**asdict(r), "prefilled_tokens": r.prefilled_tokens} for r in records],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    (args.out / "report.md").write_text(markdown(report))
    print(markdown(report))
    print(f"[long-session] wrote {args.out}/report.json and report.md", file=sys.stderr)
    return 1 if report["summary"]["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
