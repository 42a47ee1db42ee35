"""Server tools inside a response (voxserve/session/response.py, VoiceRAG's search_knowledge):
the call and its output are items the client sees, the answer is spoken from the result in the
same response, and the transcript names the sources."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.fakes import FakePipeline, start_session, stop_session
from voxserve.knowledge.tool import TOOL_NAME, tool_spec
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.session_config import FunctionTool
from voxserve.server_tools import Source, ToolResult

pytestmark = pytest.mark.unit

PASSAGE = "The Lisbon store opens at 9 am on weekdays."


class FakeKnowledge:
    def __init__(self, on_by_default: bool = True, fail: bool = False,
                 preamble: str | None = None) -> None:
        self.queries: list[str] = []
        self._on = on_by_default
        self._fail = fail
        self._preamble = preamble

    @property
    def spec(self) -> FunctionTool:
        return tool_spec("the shop")

    @property
    def on_by_default(self) -> bool:
        return self._on

    @property
    def preamble(self) -> str | None:
        return self._preamble

    async def call(self, arguments: str) -> ToolResult:
        self.queries.append(json.loads(arguments)["query"])
        if self._fail:
            raise RuntimeError("index is gone")
        return ToolResult(json.dumps({"results": [{"source": "stores.md", "text": PASSAGE}]}),
                          (Source("stores.md", "Stores", "Lisbon store", PASSAGE),))


def ask(text: str) -> list[dict[str, Any]]:
    return [{"type": "conversation.item.create", "item": {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": text}]}}, {"type": "response.create"}]


SEARCH = (TOOL_NAME, '{"query": "Lisbon store hours"}')


async def with_client_tool(tr: Any) -> None:
    """The session gets a tool of the client's own, beside the server's."""
    tr.push({"type": "session.update", "session": {"type": "realtime", "tools": [{
        "type": "function", "name": "open_ticket", "description": "open a support ticket",
        "parameters": {"type": "object", "properties": {"topic": {"type": "string"}}}}]}})
    await tr.wait_for("session.updated")


@pytest.mark.parametrize("dialect", [Dialect.GA, Dialect.BETA, Dialect.VOICE_LIVE])
async def test_a_search_is_answered_in_the_same_response(dialect: Dialect) -> None:
    pipe = FakePipeline(tokens=["It opens ", "at 9 am ", "on weekdays."])
    pipe.scripted_calls = [SEARCH]
    tool = FakeKnowledge()
    _, tr, _, task = await start_session(dialect, pipe, server_tools=[tool])
    for event in ask("When does the Lisbon store open?"):
        tr.push(event)
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    assert tr.types().count("response.created") == 1
    call, message = done["response"]["output"]
    assert call["type"] == "function_call" and call["name"] == TOOL_NAME
    assert message["type"] == "message"
    assert tool.queries == ["Lisbon store hours"]
    # the second step read the call and its result
    step2 = pipe.requests[1].messages
    assert step2[-2]["tool_calls"][0]["id"] == call["call_id"]
    assert step2[-1]["role"] == "tool" and PASSAGE in step2[-1]["content"]
    assert pipe.requests[1].tool_choice == "none"  # only server tools: the next step speaks
    outputs = [e["item"] for e in tr.sent if e["type"] in ("conversation.item.added",
                                                           "conversation.item.created")
               and e["item"]["type"] == "function_call_output"]
    assert outputs and outputs[0]["call_id"] == call["call_id"] and PASSAGE in outputs[0]["output"]
    transcript = next(e for e in tr.sent if e["type"].endswith("audio_transcript.done"))
    assert transcript["transcript"] == "It opens at 9 am on weekdays."
    assert transcript["sources"] == [{"path": "stores.md", "title": "Stores",
                                      "section": "Lisbon store"}]
    assert "stores.md" not in " ".join(pipe.spoken)  # sources are never spoken
    assert done["response"]["usage"]["output_token_details"]["text_tokens"] == 2 * 3
    await stop_session(tr, task, dialect)


async def test_answers_without_a_search_carry_no_sources() -> None:
    pipe = FakePipeline()
    tool = FakeKnowledge()
    _, tr, _, task = await start_session(Dialect.GA, pipe, server_tools=[tool])
    for event in ask("Hello"):
        tr.push(event)
    await tr.wait_for("response.done")
    assert [t.name for t in pipe.requests[0].tools] == [TOOL_NAME]  # offered by default
    transcript = next(e for e in tr.sent if e["type"] == "response.output_audio_transcript.done")
    assert "sources" not in transcript
    await stop_session(tr, task, Dialect.GA)


async def test_sessions_and_choices_that_turn_it_off() -> None:
    pipe = FakePipeline()
    _, tr, _, task = await start_session(Dialect.GA, pipe, server_tools=[FakeKnowledge()])
    tr.push({"type": "session.update", "session": {"type": "realtime",
                                                   "voxserve": {"knowledge": False}}})
    await tr.wait_for("session.updated")
    for event in ask("Hello"):
        tr.push(event)
    await tr.wait_for("response.done")
    assert pipe.requests[-1].tools == ()
    tr.push({"type": "session.update", "session": {"type": "realtime",
                                                   "voxserve": {"knowledge": True}}})
    await tr.wait_for("session.updated", 2)
    tr.push({"type": "response.create", "response": {"tool_choice": "none"}})
    await tr.wait_for("response.done", 2)
    assert pipe.requests[-1].tools == () or pipe.requests[-1].tool_choice == "none"
    assert all(t.name != TOOL_NAME for t in pipe.requests[-1].tools)
    await stop_session(tr, task, Dialect.GA)


async def test_off_by_default_until_a_session_asks() -> None:
    pipe = FakePipeline()
    _, tr, _, task = await start_session(Dialect.BETA, pipe,
                                         server_tools=[FakeKnowledge(on_by_default=False)])
    tr.push({"type": "response.create"})
    await tr.wait_for("response.done")
    assert pipe.requests[-1].tools == ()
    tr.push({"type": "session.update", "session": {"voxserve": {"knowledge": True}}})
    await tr.wait_for("session.updated")
    tr.push({"type": "response.create"})
    await tr.wait_for("response.done", 2)
    assert [t.name for t in pipe.requests[-1].tools] == [TOOL_NAME]
    await stop_session(tr, task, Dialect.BETA)


async def test_a_client_tool_of_the_same_name_is_the_clients() -> None:
    pipe = FakePipeline()
    pipe.scripted_calls = [SEARCH]
    tool = FakeKnowledge()
    _, tr, _, task = await start_session(Dialect.GA, pipe, server_tools=[tool])
    tr.push({"type": "session.update", "session": {"type": "realtime", "tools": [{
        "type": "function", "name": TOOL_NAME, "description": "mine",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}]}})
    await tr.wait_for("session.updated")
    for event in ask("When does the Lisbon store open?"):
        tr.push(event)
    done = await tr.wait_for("response.done")
    assert [o["type"] for o in done["response"]["output"]] == ["function_call"]
    assert tool.queries == [] and len(pipe.requests) == 1  # the client runs its own tool
    await stop_session(tr, task, Dialect.GA)


async def test_a_model_that_keeps_searching_still_answers() -> None:
    pipe = FakePipeline(tokens=["Sorry, ", "I could not find it."])
    pipe.scripted_calls = [(TOOL_NAME, f'{{"query": "try {n}"}}') for n in range(5)]
    tool = FakeKnowledge()
    _, tr, _, task = await start_session(Dialect.GA, pipe, server_tools=[tool])
    # with a client tool in the session, each step after a search may call again
    await with_client_tool(tr)
    for event in ask("Where is it?"):
        tr.push(event)
    done = await tr.wait_for("response.done")
    assert [r.tool_choice for r in pipe.requests] == ["auto", "auto", "auto", "none"]
    assert len(tool.queries) == 3
    assert [o["type"] for o in done["response"]["output"]] == ["function_call"] * 3 + ["message"]
    await stop_session(tr, task, Dialect.GA)


async def test_a_failing_tool_is_a_result_the_answer_speaks_about() -> None:
    pipe = FakePipeline(tokens=["I can't look that up right now."])
    pipe.scripted_calls = [SEARCH]
    _, tr, _, task = await start_session(Dialect.VOICE_LIVE, pipe,
                                         server_tools=[FakeKnowledge(fail=True)])
    for event in ask("When does the Lisbon store open?"):
        tr.push(event)
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    assert "search_knowledge failed: RuntimeError" in pipe.requests[1].messages[-1]["content"]
    transcript = next(e for e in tr.sent if e["type"] == "response.audio_transcript.done")
    assert transcript["sources"] == []  # it searched, and found nothing to cite
    await stop_session(tr, task, Dialect.VOICE_LIVE)


async def test_a_preamble_is_its_own_message_said_before_the_answer() -> None:
    pipe = FakePipeline(tokens=["It opens ", "at 9 am."])
    pipe.scripted_calls = [SEARCH]
    _, tr, _, task = await start_session(Dialect.GA, pipe,
                                         server_tools=[FakeKnowledge(preamble="Let me check.")])
    for event in ask("When does the Lisbon store open?"):
        tr.push(event)
    done = await tr.wait_for("response.done")
    output = done["response"]["output"]
    assert [o["type"] for o in output] == ["function_call", "message", "message"], output
    assert output[1]["content"][0]["transcript"] == "Let me check."
    assert output[2]["content"][0]["transcript"] == "It opens at 9 am."
    assert pipe.spoken == ["Let me check.", "It opens at 9 am."]
    transcripts = [e for e in tr.sent if e["type"] == "response.output_audio_transcript.done"]
    assert "sources" not in transcripts[0]  # the preamble cites nothing
    assert transcripts[1]["sources"][0]["path"] == "stores.md"
    # each message has its own audio, and the first went out before the answer's
    audio_items = [e["item_id"] for e in tr.sent if e["type"] == "response.output_audio.delta"]
    assert audio_items[0] == output[1]["id"] and audio_items[-1] == output[2]["id"]
    # the next answer reads the call, its result and the answer, not the preamble: it would
    # put a second assistant turn beside the call, which some chat templates refuse
    tr.push({"type": "response.create"})
    await tr.wait_for("response.done", 2)
    context = pipe.requests[-1].messages
    assert [m["role"] for m in context] == ["system", "user", "assistant", "tool", "assistant"]
    assert "tool_calls" in context[2] and context[4]["content"] == "It opens at 9 am."
    await stop_session(tr, task, Dialect.GA)


async def test_no_preamble_for_text_answers() -> None:
    pipe = FakePipeline(tokens=["At 9 am."])
    pipe.scripted_calls = [SEARCH]
    _, tr, _, task = await start_session(Dialect.BETA, pipe,
                                         server_tools=[FakeKnowledge(preamble="Let me check.")])
    tr.push({"type": "session.update", "session": {"modalities": ["text"]}})
    await tr.wait_for("session.updated")
    for event in ask("When does the Lisbon store open?"):
        tr.push(event)
    done = await tr.wait_for("response.done")
    assert [o["type"] for o in done["response"]["output"]] == ["function_call", "message"]
    assert done["response"]["output"][1]["content"][0]["text"] == "At 9 am."
    await stop_session(tr, task, Dialect.BETA)


async def test_a_client_tool_called_after_a_search_ends_the_response() -> None:
    pipe = FakePipeline()
    pipe.scripted_calls = [SEARCH, ("open_ticket", '{"topic": "opening hours"}')]
    tool = FakeKnowledge()
    _, tr, _, task = await start_session(Dialect.GA, pipe, server_tools=[tool])
    await with_client_tool(tr)
    for event in ask("Open a ticket about the Lisbon store's hours"):
        tr.push(event)
    done = await tr.wait_for("response.done")
    names = [o["name"] for o in done["response"]["output"]]
    assert names == [TOOL_NAME, "open_ticket"]  # the client runs its tool and asks again
    assert len(pipe.requests) == 2 and tool.queries == ["Lisbon store hours"]
    await stop_session(tr, task, Dialect.GA)
