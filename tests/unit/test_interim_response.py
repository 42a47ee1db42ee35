"""Voice Live `interim_response` (voxserve/session/response.py): a filler said as a message of its
own while the answer is slow or a tool runs, never after the answer has begun."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.fakes import FakePipeline, start_session, stop_session
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.unit

FILLER = {"type": "static_interim_response", "texts": ["One moment."],
          "triggers": ["latency"], "latency_threshold_ms": 0}
TOOL = {"type": "function", "name": "get_weather", "description": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def _messages(done: dict[str, Any]) -> list[str]:
    return [o["content"][0]["transcript"] for o in done["response"]["output"]
            if o["type"] == "message"]


async def _session(pipe: FakePipeline, **session: Any) -> Any:
    _, tr, _, task = await start_session(Dialect.VOICE_LIVE, pipe)
    tr.push({"type": "session.update", "session": {"turn_detection": None, **session}})
    await tr.wait_for("session.updated")
    return tr, task


async def test_a_slow_answer_gets_a_filler_first() -> None:
    pipe = FakePipeline(tokens=["It is ", "sunny."], token_delay=0.2)
    tr, task = await _session(pipe, interim_response=FILLER)
    updated = next(e for e in tr.sent if e["type"] == "session.updated")
    assert updated["session"]["interim_response"]["texts"] == ["One moment."]
    tr.push({"type": "response.create"})
    done = await tr.wait_for("response.done")
    assert _messages(done) == ["One moment.", "It is sunny."]
    assert pipe.spoken == ["One moment.", "It is sunny."]
    await stop_session(tr, task, Dialect.VOICE_LIVE)


async def test_a_quick_answer_gets_none() -> None:
    pipe = FakePipeline(tokens=["Hello."])
    tr, task = await _session(pipe, interim_response={**FILLER, "latency_threshold_ms": 5000})
    tr.push({"type": "response.create"})
    done = await tr.wait_for("response.done")
    assert _messages(done) == ["Hello."]
    await stop_session(tr, task, Dialect.VOICE_LIVE)


async def test_a_client_tool_call_is_covered_while_the_app_runs_it() -> None:
    pipe = FakePipeline(tool_call=("get_weather", '{"city": "Oslo"}'))
    tr, task = await _session(pipe, tools=[TOOL], interim_response={
        "type": "static_interim_response", "texts": ["Let me look that up."], "triggers": ["tool"]})
    tr.push({"type": "response.create"})
    done = await tr.wait_for("response.done")
    output = done["response"]["output"]
    assert [o["type"] for o in output] == ["function_call", "message"]
    assert _messages(done) == ["Let me look that up."]
    await stop_session(tr, task, Dialect.VOICE_LIVE)


async def test_a_response_can_bring_its_own_filler() -> None:
    pipe = FakePipeline(tokens=["Fine."], token_delay=0.2)
    tr, task = await _session(pipe)
    tr.push({"type": "response.create", "response": {"interim_response": FILLER}})
    done = await tr.wait_for("response.done")
    assert _messages(done) == ["One moment.", "Fine."]
    tr.push({"type": "response.create"})  # the next one has none
    done = await tr.wait_for("response.done", 2)
    assert _messages(done) == ["Fine."]
    await stop_session(tr, task, Dialect.VOICE_LIVE)


async def test_an_llm_filler_is_refused_and_the_rest_applies() -> None:
    pipe = FakePipeline()
    _, tr, _, task = await start_session(Dialect.VOICE_LIVE, pipe)
    tr.push({"type": "session.update", "session": {"instructions": "Be brief.", "interim_response": {
        "type": "llm_interim_response", "triggers": ["latency"]}}})
    error = await tr.wait_for("error")
    assert error["error"]["param"] == "session.interim_response.type"
    assert "static_interim_response" in error["error"]["message"]
    updated = await tr.wait_for("session.updated")
    assert updated["session"]["instructions"] == "Be brief."
    assert updated["session"]["interim_response"] is None
    tr.push({"type": "session.update", "session": {"interim_response": {
        "type": "static_interim_response", "texts": []}}})
    error = await tr.wait_for("error", 2)
    assert error["error"]["param"].startswith("session.interim_response.texts")
    await stop_session(tr, task, Dialect.VOICE_LIVE)
