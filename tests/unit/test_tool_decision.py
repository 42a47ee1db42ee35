"""The speak-or-call decision (models/tool_decision.py) and the llama.cpp engine's two-step tool
answers, against a scripted stand-in for the embedded llama.cpp server."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from voxserve.models.base import ChatRequest, LlmDelta, ToolSpec
from voxserve.models.llamacpp_llm import LlamaCppEngine
from voxserve.models.sampling import SamplingOverrides
from voxserve.models.tool_decision import (
    MESSAGE_OPENING, OPENING, after_tool_result, call_probability, grounded, repeats_call,
)

pytestmark = pytest.mark.unit

WEATHER = ToolSpec("get_weather", "Weather for a city.",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
TIMER = ToolSpec("set_timer", "A timer.", {"type": "object", "properties": {"minutes": {"type": "integer"}}})


def _lp(pairs: dict[str, float]) -> list[tuple[str, float]]:
    return [(t, math.log(p)) for t, p in pairs.items()]


def test_call_probability_sums_the_mass_of_each_side() -> None:
    p = call_probability(_lp({"get": 0.2, "set": 0.2, "message": 0.4, "weather": 0.15}), (WEATHER, TIMER))
    assert p == pytest.approx(0.5)  # "weather" begins no name and is left out
    assert call_probability(_lp({"message": 0.9, " get": 0.1}), (WEATHER,)) == pytest.approx(0.1)
    # a token that begins both a tool's name and "message" decides nothing
    music = ToolSpec("messenger", "", {})
    assert call_probability(_lp({"mess": 0.6, "message": 0.4}), (music,)) == pytest.approx(0.0)
    assert call_probability([], (WEATHER,)) == 0.0


def _call_msg(call_id: str, name: str, args: str) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]}


def test_a_repeated_call_is_one_with_equal_arguments_since_the_user_spoke() -> None:
    history = [{"role": "user", "content": "Weather in Oslo?"},
               _call_msg("c1", "get_weather", '{"city": "Oslo"}'),
               {"role": "tool", "tool_call_id": "c1", "content": "21 C"}]
    assert after_tool_result(history)
    assert repeats_call(history, "get_weather", '{ "city":"Oslo" }')
    assert not repeats_call(history, "get_weather", '{"city": "Bergen"}')
    assert not repeats_call(history, "set_timer", '{"city": "Oslo"}')
    asked_again = [*history, {"role": "assistant", "content": "21 degrees."},
                   {"role": "user", "content": "And now, in Oslo?"}]
    assert not after_tool_result(asked_again)
    assert not repeats_call(asked_again, "get_weather", '{"city": "Oslo"}')


class ScriptedServer:
    """Answers `handle_chat_completions` as llama.cpp would: the decision request (max_tokens 1
    with logprobs) from `decision`, a prefilled spoken answer by continuing it with `speech`, and
    a schema-constrained request with `call` (a JSON answer)."""

    def __init__(self, decision: dict[str, float], speech: str = 'It is sunny."}',
                 call: str = '{"type": "get_weather", "arguments": {"city": "Oslo"}}') -> None:
        self.decision, self.speech, self.call = decision, speech, call
        self.bodies: list[dict[str, Any]] = []

    def handle_chat_completions(self, body: dict[str, Any], on_chunk: Any) -> None:
        self.bodies.append(body)
        last = body["messages"][-1]
        if body.get("logprobs"):
            top = [{"token": t, "logprob": math.log(p)} for t, p in self.decision.items()]
            on_chunk({"choices": [{"delta": {"content": "x"}, "logprobs": {"content": [
                {"token": "x", "logprob": 0.0, "top_logprobs": top}]}}]})
            return
        if "response_format" in body:
            pieces = [self.call[i:i + 5] for i in range(0, len(self.call), 5)]
        else:
            assert last == {"role": "assistant", "content": MESSAGE_OPENING}, last
            assert "grammar" in body  # the string's rest and the close, nothing after
            pieces = [self.speech[i:i + 3] for i in range(0, len(self.speech), 3)]
        for piece in pieces:
            if on_chunk({"choices": [{"delta": {"content": piece}}]}):
                return  # the engine stopped the request
        on_chunk({"choices": [{"delta": {}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 100, "completion_tokens": 9}})

    def kinds(self) -> list[str]:
        return ["decide" if b.get("logprobs") else "call" if "response_format" in b else "speak"
                for b in self.bodies]


def _engine(server: ScriptedServer, threshold: float = 0.3) -> LlamaCppEngine:
    engine = LlamaCppEngine.__new__(LlamaCppEngine)  # no model: the server is scripted
    engine._server = server
    engine._executor = ThreadPoolExecutor(max_workers=2)
    engine._sampling = SamplingOverrides()
    engine._n_ctx = 4096
    engine.reproducible = False
    engine.default_max_tokens = 64
    engine.call_threshold = threshold
    return engine


async def _answer(engine: LlamaCppEngine, messages: list[dict[str, Any]], choice: str = "auto"
                  ) -> list[LlmDelta]:
    request = ChatRequest(messages=messages, tools=(WEATHER, TIMER), tool_choice=choice)
    return [d async for d in engine.stream(request)]


ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Oslo?"}]


async def test_auto_calls_when_the_call_probability_reaches_the_threshold() -> None:
    server = ScriptedServer({"get": 0.35, "message": 0.65})
    deltas = await _answer(_engine(server, threshold=0.3), ASK)
    assert [(d.kind, d.name) for d in deltas] == [("tool_call", "get_weather"), ("done", "")]
    assert json.loads(deltas[0].arguments) == {"city": "Oslo"}
    assert deltas[-1].finish_reason == "tool_call"
    assert server.kinds() == ["decide", "call"]
    decide = server.bodies[0]
    assert decide["messages"][-1] == {"role": "assistant", "content": OPENING}
    assert decide["max_tokens"] == 1
    # the call is constrained to the tools: "auto" has become "required" for the schema
    schema = server.bodies[1]["response_format"]["json_schema"]["schema"]
    assert [b["properties"]["type"]["const"] for b in schema["anyOf"]] == ["get_weather", "set_timer"]


async def test_auto_speaks_below_the_threshold_with_the_opening_prefilled() -> None:
    server = ScriptedServer({"get": 0.2, "message": 0.8})
    deltas = await _answer(_engine(server, threshold=0.3), ASK)
    assert "".join(d.text for d in deltas if d.kind == "text") == "It is sunny."
    assert deltas[-1].kind == "done" and deltas[-1].finish_reason == "stop"
    assert server.kinds() == ["decide", "speak"]
    assert "response_format" not in server.bodies[1]
    assert deltas[-1].prompt_tokens == 100


async def test_after_a_result_a_repeat_of_the_same_call_is_spoken_instead() -> None:
    answered = [*ASK, _call_msg("c1", "get_weather", '{"city": "Oslo"}'),
                {"role": "tool", "tool_call_id": "c1", "content": '{"temperature_c": 21}'}]
    server = ScriptedServer({"get": 0.9, "message": 0.1})  # the model wants the same call again
    deltas = await _answer(_engine(server), answered)
    assert [d.kind for d in deltas if d.kind != "text"] == ["done"]
    assert "".join(d.text for d in deltas if d.kind == "text") == "It is sunny."
    assert server.kinds() == ["decide", "call", "speak"]
    # a different city the user asked about is a real second call
    both = [{"role": "user", "content": "Weather in Oslo and Bergen?"}, *answered[2:]]
    other = ScriptedServer({"get": 0.9, "message": 0.1},
                           call='{"type": "get_weather", "arguments": {"city": "Bergen"}}')
    deltas = await _answer(_engine(other), both)
    assert deltas[0].kind == "tool_call" and json.loads(deltas[0].arguments) == {"city": "Bergen"}


async def test_a_call_with_made_up_arguments_is_spoken_instead() -> None:
    # "What's the capital of France?" -> get_weather(city="London"): seen from the 0.5B default
    server = ScriptedServer({"get": 0.9, "message": 0.1},
                            call='{"type": "get_weather", "arguments": {"city": "London"}}')
    question = [{"role": "user", "content": "What's the capital of France?"}]
    deltas = await _answer(_engine(server), question)
    assert deltas[0].kind == "text" and server.kinds() == ["decide", "call", "speak"]
    # "required" is the client's word: the call stands
    server = ScriptedServer({}, call='{"type": "get_weather", "arguments": {"city": "London"}}')
    deltas = await _answer(_engine(server), question, "required")
    assert deltas[0].kind == "tool_call"


def test_grounding_checks_required_free_text_only() -> None:
    tools = (WEATHER, ToolSpec("lookup_order", "", {"type": "object", "required": ["order_id", "unit"],
                                                     "properties": {"order_id": {"type": "string"},
                                                                    "unit": {"type": "string",
                                                                             "enum": ["a", "b"]}}}),
             TIMER)
    said = [{"role": "system", "content": "The user lives in Bergen."},
            {"role": "user", "content": "Where is order B-772? And the weather at home?"}]
    assert grounded("get_weather", '{"city": "Bergen"}', tools, said)  # from the instructions
    assert grounded("get_weather", '{"city": "bergen, Norway"}', tools, said)  # one word is enough
    assert not grounded("get_weather", '{"city": "London"}', tools, said)
    assert grounded("lookup_order", '{"order_id": "b772", "unit": "a"}', tools, said)  # squashed
    assert grounded("lookup_order", '{"order_id": "B 772", "unit": "b"}', tools, said)
    assert not grounded("lookup_order", '{"order_id": "123", "unit": "a"}', tools, said)
    assert grounded("set_timer", '{"minutes": 60}', tools, said)  # numbers are not checked
    # filler the model puts where it knows nothing grounds nothing, though "my" was said
    assert not grounded("get_weather", '{"city": "your_email@example.com"}', tools, said)
    assert not grounded("get_weather", '{"city": "My"}', tools, said)
    assert grounded("unknown_tool", '{"x": "y"}', tools, said)


def test_after_a_result_values_must_come_from_the_user() -> None:
    tools = (WEATHER, TIMER.__class__("set_timer", "", {"type": "object", "required": ["minutes"],
                                                         "properties": {"minutes": {"type": "integer"}}}))
    answered = [{"role": "user", "content": "Weather in Oslo, then a ten minute timer"},
                _call_msg("c1", "get_weather", '{"city": "Oslo"}'),
                {"role": "tool", "tool_call_id": "c1", "content": '{"temperature_c": 21, "city": "Paris"}'}]
    assert grounded("set_timer", '{"minutes": 10}', tools, answered)  # "ten"
    assert not grounded("set_timer", '{"minutes": 21}', tools, answered)  # from the result
    assert not grounded("get_weather", '{"city": "Paris"}', tools, answered)  # from the result
    # before any result, a number is not checked and a result's words count
    assert grounded("set_timer", '{"minutes": 60}', tools, answered[:1])


async def test_after_a_result_the_threshold_is_at_least_one_half() -> None:
    answered = [*ASK, _call_msg("c1", "get_weather", '{"city": "Oslo"}'),
                {"role": "tool", "tool_call_id": "c1", "content": "21 C"}]
    server = ScriptedServer({"set": 0.4, "message": 0.6})
    deltas = await _answer(_engine(server, threshold=0.3), answered)
    assert deltas[0].kind == "text" and server.kinds() == ["decide", "speak"]


@pytest.mark.parametrize("choice,kinds", [("none", ["speak"]), ("required", ["call"]),
                                          ("set_timer", ["call"])])
async def test_explicit_choices_take_no_decision(choice: str, kinds: list[str]) -> None:
    server = ScriptedServer({"get": 1.0}, call='{"type": "set_timer", "arguments": {"minutes": 5}}')
    deltas = await _answer(_engine(server), ASK, choice)
    assert server.kinds() == kinds
    if choice == "none":
        assert deltas[0].kind == "text"
    else:
        assert deltas[0].kind == "tool_call" and deltas[0].name == "set_timer"
    if choice == "set_timer":
        schema = server.bodies[0]["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["type"]["const"] == "set_timer"


async def test_required_may_repeat_a_call() -> None:
    # the client insisted on a call: the repeat guard is for "auto" only
    answered = [*ASK, _call_msg("c1", "get_weather", '{"city": "Oslo"}'),
                {"role": "tool", "tool_call_id": "c1", "content": "21 C"}]
    server = ScriptedServer({})
    deltas = await _answer(_engine(server), answered, "required")
    assert deltas[0].kind == "tool_call"
