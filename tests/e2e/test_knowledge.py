"""VoiceRAG on the real stack: questions about the benchmark's documents
(bench/knowledge_docs, configured on the tests' server, offered to sessions that ask) answered by
the real LLM from what `search_knowledge` found, spoken by the real TTS, with the sources in the
transcript event, through the official `openai` and `azure-ai-voicelive` clients.

The server decodes greedily with a fixed seed, so each question has one outcome; the whole set
with its accuracy is `python -m bench.knowledge` (docs/perf/knowledge.md).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.e2e.voice_live import voice_live
from voxserve.bench.knowledge import answered
from voxserve.bench.knowledge_cases import QUESTIONS
from voxserve.bench.tool_use import speech
from voxserve.client import pcm16_frames

pytestmark = pytest.mark.e2e

TIMEOUT_S = 240
BY_ID = {q.id: q for q in QUESTIONS}
SPOKEN = "return-days"  # "How many days do I have to return a bike?"


def _client(server: Server) -> Any:
    from openai import AsyncOpenAI

    return AsyncOpenAI(api_key=server.api_key, websocket_base_url=f"{server.ws}/v1")


async def _spoken_turn(server: Server, audio: Any, knowledge: bool | None,
                       tool_choice: Any = None) -> list[Any]:
    """One spoken question in a GA session, its events up to response.done."""
    events: list[Any] = []
    session: dict[str, Any] = {"type": "realtime", "output_modalities": ["audio"],
                               "audio": {"input": {"turn_detection": None}}}
    if knowledge is not None:
        session["voxserve"] = {"knowledge": knowledge}
    async with _client(server).realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session=session)
        async for ev in conn:
            if ev.type == "session.updated":
                break
        for frame in pcm16_frames(audio, tail_silence_s=0.3):
            await conn.input_audio_buffer.append(audio=frame)
        await conn.input_audio_buffer.commit()
        await conn.response.create(**({"response": {"tool_choice": tool_choice}}
                                      if tool_choice else {}))
        async with asyncio.timeout(TIMEOUT_S):
            async for ev in conn:
                events.append(ev)
                if ev.type == "response.done":
                    break
    return events


@pytest.fixture(scope="module")
def question_speech() -> Any:
    return speech({SPOKEN: BY_ID[SPOKEN].text})[SPOKEN]


async def test_a_spoken_question_is_answered_from_the_documents(server: Server,
                                                                question_speech: Any) -> None:
    # The search is asked for by name: whether the model searches of its own accord is the
    # decision's business (tests/unit/test_server_tools.py, and the Voice Live test below).
    q = BY_ID[SPOKEN]
    events = await _spoken_turn(server, question_speech, knowledge=True,
                                tool_choice={"type": "function", "name": "search_knowledge"})
    assert not [e for e in events if e.type == "error"], events
    done = events[-1].response
    assert done.status == "completed"
    # a search, the preamble said while it and the answer ran, then the answer, in one response
    assert [(o.type, getattr(o, "name", None)) for o in done.output] == [
        ("function_call", "search_knowledge"), ("message", None), ("message", None)], done.output
    assert done.output[1].content[0].transcript == "Let me check."
    call = done.output[0]
    assert "return" in json.loads(call.arguments)["query"].lower()
    result = next(e.item for e in events if e.type == "conversation.item.added"
                  and e.item.type == "function_call_output")
    assert result.call_id == call.call_id
    found = json.loads(result.output)["results"]
    assert q.doc in [r["source"] for r in found] and "30 days" in json.dumps(found)
    preamble, transcript = [e for e in events
                            if e.type == "response.output_audio_transcript.done"]
    assert getattr(preamble, "sources", None) is None
    assert answered(q, transcript.transcript), transcript.transcript
    assert q.doc in [s["path"] for s in transcript.sources], transcript
    assert q.doc not in transcript.transcript  # sources ride in the event, not in the words
    audio_items = {e.item_id for e in events if e.type == "response.output_audio.delta"}
    assert audio_items == {done.output[1].id, done.output[2].id}  # both were spoken


async def test_a_session_that_does_not_ask_gets_no_search(server: Server,
                                                          question_speech: Any) -> None:
    # the tests' server offers the tool only to sessions that ask (knowledge.on_by_default)
    events = await _spoken_turn(server, question_speech, knowledge=None)
    done = events[-1].response
    assert done.status == "completed"
    assert [o.type for o in done.output] == ["message"], done.output
    transcript = next(e for e in events if e.type == "response.output_audio_transcript.done")
    assert getattr(transcript, "sources", None) is None


async def test_a_question_the_model_looks_up_is_cited_through_voice_live(
        server: Server) -> None:
    from azure.ai.voicelive.models import InputTextContentPart, RequestSession, UserMessageItem

    q = BY_ID["aero-price"]
    async with voice_live(server) as vl:
        session = RequestSession(modalities=["text", "audio"], voice="en-US-AvaNeural",
                                 turn_detection=None)
        session["voxserve"] = {"knowledge": True}
        await vl.conn.session.update(session=session)
        await vl.until("session.updated")
        await vl.conn.conversation.item.create(item=UserMessageItem(
            content=[InputTextContentPart(text=q.text)]))
        await vl.conn.response.create()  # tool_choice auto: the model decides to search
        done = await vl.until("response.done")
    assert not [e for e in vl.events if e["type"] == "error"], vl.events
    assert done["response"]["status"] == "completed"
    kinds = [o["type"] for o in done["response"]["output"]]
    assert kinds == ["function_call", "message", "message"], kinds
    transcript = [e for e in vl.events if e["type"] == "response.audio_transcript.done"][-1]
    assert answered(q, transcript["transcript"]), transcript["transcript"]
    assert transcript["sources"][0]["path"] == q.doc, transcript["sources"]


async def test_an_interim_response_covers_an_apps_tool_through_voice_live(server: Server) -> None:
    from azure.ai.voicelive.models import (
        FunctionTool, InputTextContentPart, InterimResponseTrigger, RequestSession,
        StaticInterimResponseConfig, UserMessageItem,
    )

    async with voice_live(server) as vl:
        await vl.conn.session.update(session=RequestSession(
            modalities=["text", "audio"], voice="en-US-AvaNeural", turn_detection=None,
            tools=[FunctionTool(name="get_weather", description="The weather in a city",
                                parameters={"type": "object", "properties": {
                                    "city": {"type": "string"}}, "required": ["city"]})],
            tool_choice="required",
            interim_response=StaticInterimResponseConfig(
                texts=["One moment, please."], triggers=[InterimResponseTrigger.TOOL])))
        updated = await vl.until("session.updated")
        await vl.conn.conversation.item.create(item=UserMessageItem(
            content=[InputTextContentPart(text="What is the weather in Oslo?")]))
        await vl.conn.response.create()
        done = await vl.until("response.done")
    assert updated["session"]["interim_response"]["texts"] == ["One moment, please."]
    assert not [e for e in vl.events if e["type"] in ("error", "warning")], vl.events
    output = done["response"]["output"]
    assert [o["type"] for o in output] == ["function_call", "message"], output
    assert output[0]["name"] == "get_weather"
    assert output[1]["content"][0]["transcript"] == "One moment, please."
    audio = [e for e in vl.events if e["type"] == "response.audio.delta"]
    assert audio and {e["item_id"] for e in audio} == {output[1]["id"]}
