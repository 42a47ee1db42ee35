"""Turn-taking on the real stack through the official SDKs: semantic end of turn across a
mid-sentence pause, a backchannel that does not cancel the agent, truncation that changes what the
next answer knows, and a tool result that survives a barge-in."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest

from tests import long_answer
from tests.conformance import check_event
from tests.e2e.conftest import Server
from tests.e2e.test_spoken_turn import TURN_TIMEOUT_S, _paced, _pcm_frames
from tests.speech import DATA, clip, wer
from voxserve.client import read_wav
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.e2e

# "He was not an | ill-disposed young man": Smart Turn gives 0.02 at this word boundary and the
# words so far end on an article, so both signals say "unfinished".
PAUSE_CLIP, PAUSE_AT_S, PAUSE_S = "0880", 1.30, 0.8


class GaConn:
    """The openai SDK's GA realtime connection, with every received event validated and kept."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []

    async def until(self, kind: str | tuple[str, ...], timeout: float = TURN_TIMEOUT_S,
                    where: Any = None) -> dict[str, Any]:
        kinds = (kind,) if isinstance(kind, str) else kind

        async def loop() -> dict[str, Any]:
            while True:
                raw = json.loads(await self.conn.recv_bytes())
                check_event(raw, Dialect.GA)
                self.events.append(raw)
                if raw["type"] in kinds and (where is None or where(raw)):
                    return raw  # type: ignore[no-any-return]
        return await asyncio.wait_for(loop(), timeout)

    def kinds(self) -> list[str]:
        return [e["type"] for e in self.events]

    async def say(self, text: str) -> None:
        await self.conn.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})

    async def stream(self, audio: np.ndarray, tail_s: float) -> None:
        await _paced(_pcm_frames(audio, tail_silence_s=tail_s),
                     lambda f: self.conn.input_audio_buffer.append(audio=f))


@asynccontextmanager
async def ga(server: Server, session: dict[str, Any]) -> AsyncIterator[GaConn]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key=server.api_key, websocket_base_url=f"{server.ws}/v1")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        c = GaConn(conn)
        await c.until("session.created", 60)
        await conn.session.update(session={"type": "realtime", **session})
        await c.until("session.updated", 60)
        yield c


def _paused_utterance() -> tuple[np.ndarray, str]:
    wav, reference = clip(PAUSE_CLIP)
    audio = read_wav(wav)
    cut = int(PAUSE_AT_S * 24000)
    return np.concatenate([audio[:cut], np.zeros(int(PAUSE_S * 24000), np.float32),
                           audio[cut:]]), reference


def _one_turn_across_the_pause(events: list[dict[str, Any]], reference: str) -> None:
    kinds = [e["type"] for e in events]
    assert kinds.count("input_audio_buffer.committed") == 1, kinds
    heard = next(e for e in events
                 if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert wer(reference, heard["transcript"]) <= 0.25, heard["transcript"]


async def test_ga_semantic_vad_waits_through_a_mid_sentence_pause(server: Server) -> None:
    audio, reference = _paused_utterance()
    async with ga(server, {"audio": {"input": {
            "transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "semantic_vad", "eagerness": "medium",
                               "create_response": False}}}}) as c:
        await c.stream(audio, tail_s=2.5)  # past the 1.5 s longest wait
        await c.until("conversation.item.input_audio_transcription.completed")
    _one_turn_across_the_pause(c.events, reference)


async def test_voice_live_azure_semantic_vad_waits_through_a_mid_sentence_pause(
        server: Server) -> None:
    from azure.ai.voicelive.aio import connect
    from azure.ai.voicelive.models import (
        AudioInputTranscriptionOptions, AzureSemanticDetection, AzureSemanticVad, RequestSession,
    )
    from azure.core.credentials import AzureKeyCredential

    audio, reference = _paused_utterance()
    events: list[dict[str, Any]] = []
    async with connect(endpoint=server.http, credential=AzureKeyCredential(server.api_key),
                       model="gpt-4o") as conn:
        async def recv() -> dict[str, Any]:
            ev = dict((await asyncio.wait_for(conn.recv(), TURN_TIMEOUT_S)).as_dict())
            check_event(ev, Dialect.VOICE_LIVE)
            events.append(ev)
            return ev

        await recv()
        await conn.session.update(session=RequestSession(
            modalities=["text", "audio"], input_audio_format="pcm16",
            input_audio_transcription=AudioInputTranscriptionOptions(model="whisper-1"),
            turn_detection=AzureSemanticVad(
                speech_duration_ms=80, languages=["en-US"], create_response=False,
                end_of_utterance_detection=AzureSemanticDetection(threshold_level="default",
                                                                  timeout_ms=1500))))
        assert (await recv())["type"] == "session.updated"
        await _paced(_pcm_frames(audio, tail_silence_s=2.5),
                     lambda f: conn.input_audio_buffer.append(audio=f))
        while (await recv())["type"] != "conversation.item.input_audio_transcription.completed":
            pass
    _one_turn_across_the_pause(events, reference)


async def _start_counting(c: GaConn) -> None:
    """Ask for the long answer of tests/long_answer.py: greedily, a count to forty in words."""
    for item in long_answer.conversation_items():
        await c.conn.conversation.item.create(item=item)
    await c.conn.response.create(response={"instructions": long_answer.INSTRUCTIONS})


async def test_a_backchannel_over_the_agent_does_not_cancel_it(server: Server) -> None:
    oh = read_wav(DATA / "backchannel" / "oh-allison.wav")  # a recorded "oh", about half a second
    async with ga(server, {"audio": {"input": {"turn_detection": {"type": "server_vad"}}}}) as c:
        await _start_counting(c)
        rid = (await c.until("response.created"))["response"]["id"]
        # The "oh" starts with the answer, so it lands while the answer is surely in progress
        # (even a short one); from then on the answer is held and cannot finish unseen.
        sender = asyncio.create_task(c.stream(oh, tail_s=1.5))
        await c.until("input_audio_buffer.speech_started")
        await c.until("input_audio_buffer.speech_stopped")
        # the answer goes on: more of its audio after the burst ended
        await c.until("response.output_audio.delta", where=lambda e: e["response_id"] == rid)
        await sender
        done = next((e for e in c.events if e["type"] == "response.done"), None)
        if done is None:  # still counting: stop it, as the user would
            await c.conn.response.cancel()
            done = await c.until("response.done")
    trail = c.kinds()[-30:]
    assert done["response"]["id"] == rid, trail
    assert done["response"]["status"] == "completed" or \
        done["response"]["status_details"]["reason"] == "client_cancelled", \
        f"the backchannel ended the count: {done['response']['status_details']}, after " \
        f"{long_answer.said(done['response'])!r}"
    assert "input_audio_buffer.committed" not in c.kinds(), trail


def _top(text: str) -> int:
    return max(long_answer.numbers(text) or [0])


async def test_truncate_cuts_what_the_llm_is_given(server: Server) -> None:
    async with ga(server, {"audio": {"input": {"turn_detection": None}}}) as c:
        await _start_counting(c)  # the only response in flight here
        # let it get well past "ten" in its text, then stop it as a client would
        said = ""
        while _top(said) < 12:
            ev = await c.until(("response.output_audio_transcript.delta", "response.done"))
            assert ev["type"] != "response.done", \
                f"the count ended before twelve: {long_answer.said(ev['response'])!r}"
            said += ev["delta"]
        await c.conn.response.cancel()
        done = next((e for e in c.events if e["type"] == "response.done"), None) \
            or await c.until("response.done")
        item = done["response"]["output"][0]
        full = item["content"][0]["transcript"]
        # Each spoken piece's transcript delta precedes its audio. The user heard up to "three":
        # the audio sent before the next piece.
        audio_ms, text, heard_until = 0.0, "", None
        for e in c.events:
            if e["type"] == "response.output_audio.delta":
                audio_ms += len(base64.b64decode(e["delta"])) / 48  # pcm16 at 24 kHz
            elif e["type"] == "response.output_audio_transcript.delta":
                if _top(text) >= 3 and heard_until is None:
                    heard_until = audio_ms
                text += e["delta"]
        assert heard_until is not None, f"no piece of the answer after 'three': {text!r}"
        probe = {"conversation": "none", "output_modalities": ["text"],
                 "max_output_tokens": 1, "instructions": "Repeat your last message.",
                 "input": [{"type": "item_reference", "id": item["id"]}]}

        async def prompt_tokens() -> int:
            """What the LLM is given of the answer: the prompt size of a one-token request whose
            only input is the answer item (outside the conversation, so nothing is added)."""
            await c.conn.response.create(response=probe)
            return int((await c.until("response.done"))["response"]["usage"]["input_tokens"])

        before = await prompt_tokens()
        await c.conn.conversation.item.truncate(item_id=item["id"], content_index=0,
                                                audio_end_ms=int(heard_until))
        await c.until("conversation.item.truncated")
        await c.conn.conversation.item.retrieve(item_id=item["id"])
        kept = (await c.until("conversation.item.retrieved"))["item"]["content"][0]["transcript"]
        after = await prompt_tokens()
    heard = long_answer.numbers(kept)
    assert heard and max(heard) < _top(full), \
        f"truncation kept {kept!r} of {full!r}: not the heard part only"
    # the LLM now sees only what was heard: its prompt lost about the unheard words' tokens
    # (a small model's answer to "what did you say last?" is no reliable probe: it tends to
    # carry on counting from whatever is left)
    unheard_words = len(full.split()) - len(kept.split())
    assert after < before and before - after >= unheard_words // 2, (before, after, kept, full)


# A tool result that makes the answer reading it long: on the packaged model the greedy answer to
# it under FORECAST_INSTRUCTIONS is "The weather in Oslo is cloudy with a temperature of 17
# degrees. On Monday, it will be light rain ..." through Sunday (142 tokens, checked by running
# it). Asked to "describe a long forecast" from the bare current weather, it said one sentence.
WEEK = {"temperature_c": 17, "sky": "cloudy", "forecast": (
    "Monday: cloudy, 17 degrees. Tuesday: light rain, 15 degrees. Wednesday: heavy rain, "
    "13 degrees. Thursday: sunny spells, 16 degrees. Friday: sunny, 19 degrees. Saturday: windy, "
    "18 degrees. Sunday: showers, 14 degrees.")}
FORECAST_INSTRUCTIONS = ("You are a weather presenter. Say the current weather, then read out the "
                         "whole forecast, day by day.")


async def test_a_tool_result_survives_a_barge_in(server: Server) -> None:
    wav, _ = clip("0930")
    tools = [{"type": "function", "name": "get_weather", "description": "Current weather for a city.",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"]}}]
    async with ga(server, {"tools": tools, "tool_choice": "auto", "audio": {"input": {
            "turn_detection": {"type": "server_vad"}}}}) as c:
        await c.say("What is the weather in Oslo right now?")
        await c.conn.response.create()
        called = await c.until("response.done")
        calls = [o for o in called["response"]["output"] if o["type"] == "function_call"]
        assert calls, called["response"]["output"]
        await c.conn.conversation.item.create(item={
            "type": "function_call_output", "call_id": calls[0]["call_id"],
            "output": json.dumps(WEEK)})
        output_item = (await c.until("conversation.item.done"))["item"]
        await c.conn.response.create(response={"tool_choice": "none",
                                               "instructions": FORECAST_INSTRUCTIONS})
        rid = (await c.until("response.created"))["response"]["id"]
        # The user talks over the forecast. The speech starts with the answer, which runs for
        # seconds after the 600 ms that confirm the interruption.
        sender = asyncio.create_task(c.stream(read_wav(wav), tail_s=1.0))
        cut = await c.until("response.done")
        assert cut["response"]["id"] == rid and cut["response"]["status"] == "cancelled", \
            f"the forecast was not cut by the user's speech ({cut['response']['status']}): " \
            f"{long_answer.said(cut['response'])!r}; last events {c.kinds()[-30:]}"
        await c.until("response.done")  # the answer to what the user said
        await sender
        await c.conn.conversation.item.retrieve(item_id=output_item["id"])
        kept = (await c.until("conversation.item.retrieved"))["item"]
        await c.say("What is the temperature in Oslo right now, according to the weather tool? "
                    "Answer with the number only.")
        await c.conn.response.create(response={"output_modalities": ["text"], "tool_choice": "none"})
        final = await c.until("response.done")
    assert kept["type"] == "function_call_output" and "17" in kept["output"], kept
    text = long_answer.said(final["response"]).lower()
    assert re.search(r"\b17\b|seventeen", text), \
        f"asked what the tool reported, the model said {text!r}"
