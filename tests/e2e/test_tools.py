"""Tool calls with `tool_choice: "auto"` through the `openai` SDK on the real stack: the labelled
cases of bench/tool_cases.py (eight tools in the session), spoken by the packaged TTS or typed.

The tests' server decodes greedily with a fixed seed, so each case has one outcome; the same
cases with sampling on are measured by `python -m bench.tool_use` (docs/perf/tool-use.md).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import Server
from voxserve.bench.tool_cases import CASES, TOOLS
from voxserve.bench.tool_use import grade, run_case, synthesize

pytestmark = pytest.mark.e2e

BY_ID = {c.id: c for c in CASES}


def _client(server: Server) -> Any:
    from openai import AsyncOpenAI

    return AsyncOpenAI(api_key=server.api_key, websocket_base_url=f"{server.ws}/v1")


@pytest.fixture(scope="module")
def weather_speech() -> dict[str, Any]:
    return synthesize([BY_ID[i] for i in ("w1", "w5")])


@pytest.mark.parametrize("case_id", ["w1", "w5"])
async def test_a_spoken_weather_question_gets_one_call_then_the_result_spoken(
        server: Server, weather_speech: dict[str, Any], case_id: str) -> None:
    case = BY_ID[case_id]
    outcome = await run_case(_client(server), case, weather_speech[case_id])
    g = grade(outcome, case)
    assert outcome.first.status == "completed" and not outcome.first.errors, outcome
    assert g["right_tool"] and g["args_match"] and not g["several_calls"], outcome
    assert outcome.after_result is not None and outcome.after_result.status == "completed", outcome
    # the result is spoken, not answered with another call (the reported loop)
    assert not g["called_after_result"], outcome.after_result
    assert g["spoken_correctly"], outcome.after_result.said
    assert outcome.after_result.first_audio_s is not None


@pytest.mark.parametrize("case_id", ["n3", "n9"])
async def test_a_question_no_tool_answers_is_spoken_without_a_call(server: Server,
                                                                  case_id: str) -> None:
    # the 0.5B model's own choice for these is a call with made-up arguments
    # (get_weather(city="London") for "How are you today?"): the grounding check speaks instead
    outcome = await run_case(_client(server), BY_ID[case_id], None)
    assert outcome.first.status == "completed" and not outcome.first.calls, outcome
    assert outcome.first.said.strip() and outcome.first.first_audio_s is not None, outcome


async def test_tool_choice_none_required_and_named(server: Server) -> None:
    client = _client(server)
    spoken = await run_case(client, BY_ID["w1"], None, tool_choice="none")
    assert not spoken.first.calls and spoken.first.said.strip(), spoken
    forced = await run_case(client, BY_ID["n1"], None, tool_choice="required")
    assert len(forced.first.calls) == 1 and forced.first.calls[0][0] in {t["name"] for t in TOOLS}, forced
    named = await run_case(client, BY_ID["w1"], None,
                           tool_choice={"type": "function", "name": "set_timer"})
    assert [c[0] for c in named.first.calls] == ["set_timer"], named


@pytest.mark.parametrize("tool,fragment", [
    ({"type": "function", "name": "get_weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "strin"}}}}, "properties/city/type"),
    ({"type": "function", "name": "get_weather",
      "parameters": {"type": "object", "required": "city"}}, "required"),
    ({"type": "function", "name": "get_weather", "parameters": {"type": "string"}}, '"type": "object"'),
    ({"type": "function", "name": "message", "parameters": {"type": "object"}}, "reserved"),
])
async def test_a_bad_tool_gets_an_error_naming_it(server: Server, tool: dict[str, Any],
                                                  fragment: str) -> None:
    async with _client(server).realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "tools": [tool]})
        async for ev in conn:
            if ev.type in ("error", "session.updated"):
                break
    assert ev.type == "error", ev
    assert ev.error.param and ev.error.param.startswith("session.tools[0]"), ev.error
    assert fragment in ev.error.message, json.dumps(ev.error.model_dump())
