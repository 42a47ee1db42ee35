"""Property-based fuzzing of the real session core with fake engines.

Each case opens two sessions side by side in one event loop, drives one of them with a random
run of client events (mostly valid ones from the SDK shapes and the protocol's vocabulary, with
live ids, then mutated; some junk frames; pauses so responses overlap what follows) and checks:
the session task keeps running, no exception escapes `handle_message`, nothing is a
`server_error`, every frame that must be refused gets an `error` naming its `param`, an error
that concerns a parameter always names one, every event sent validates against the official
SDK models, and afterwards the session still completes a turn while the other session, left
alone, is unaffected.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conformance import check_event
from tests.fuzz import (
    Case, bad_base64, examples, items, junk_frames, mutated, pcm16_b64, sdk_events,
    session_payloads, tones,
)
from tests.unit.fakes import FakePipeline, FakeTransport, append_event, start_session, tone_pcm16
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode
from voxserve.session.session import RealtimeSession

pytestmark = pytest.mark.unit

# Codes that are about one parameter: their error must say which. The two raised while the JSON
# is still being decoded (a number out of range, an object with too many keys) cannot know
# where they are yet, and a refusal of the event in this session's state (response.create in a
# transcription session) concerns no parameter; those are told apart by their message.
PARAM_CODES = {ErrorCode.INVALID_VALUE, ErrorCode.INVALID_TYPE,
               ErrorCode.MISSING_REQUIRED_PARAMETER, ErrorCode.UNKNOWN_PARAMETER,
               ErrorCode.UNKNOWN_EVENT_TYPE, ErrorCode.TRUNCATE_INVALID_AUDIO_END}
NO_PARAM = ("is out of range", "fields is more than", "this is a transcription session")


class Live:
    """One fuzzed session and what the test knows of it."""

    def __init__(self, dialect: Dialect, session: RealtimeSession, transport: FakeTransport,
                 task: asyncio.Task[None]) -> None:
        self.dialect, self.session, self.transport, self.task = dialect, session, transport, task

    def item_ids(self) -> list[str]:
        return [e["item"]["id"] for e in self.transport.sent
                if e["type"] in ("conversation.item.created", "conversation.item.added",
                                 "conversation.item.done", "response.output_item.added")]

    def response_ids(self) -> list[str]:
        return [e["response"]["id"] for e in self.transport.sent if e["type"] == "response.created"]

    async def settle(self) -> None:
        """Until the writer has handed every queued event to the transport."""
        while not self.session._outbox.empty():
            await asyncio.sleep(0)


@st.composite
def vocabulary_event(draw: st.DrawFn, live: Live) -> dict[str, Any]:
    """A well-formed event with ids the session holds (or nearly holds)."""
    dialect = live.dialect
    # Ids are drawn as indices of a fixed range, not from the live list: what the session holds
    # depends on timing, and hypothesis needs the same draws to mean the same choices.
    known = live.item_ids() or ["item_none"]
    responses = live.response_ids() or ["resp_x"]
    item_id = draw(st.one_of(st.integers(0, 63).map(lambda i: known[-1 - i % len(known)]),
                             st.sampled_from(["item_x", ""])))
    turn_id = draw(st.sampled_from(["t1", "t1", "t2"]))
    choices: list[st.SearchStrategy[dict[str, Any]]] = [
        st.builds(lambda a: {"type": "input_audio_buffer.append", "audio": a}, tones),
        st.builds(lambda a: {"type": "input_audio_buffer.append", "audio": a}, bad_base64),
        st.just({"type": "input_audio_buffer.commit"}),
        st.just({"type": "input_audio_buffer.clear"}),
        st.just({"type": "output_audio_buffer.clear"}),
        st.builds(lambda i, p: {"type": "conversation.item.create", "item": i,
                                **({"previous_item_id": p} if p else {})},
                  items(dialect), st.one_of(st.none(), st.just("root"), st.just(item_id))),
        st.just({"type": "conversation.item.delete", "item_id": item_id}),
        st.just({"type": "conversation.item.retrieve", "item_id": item_id}),
        st.builds(lambda c, ms: {"type": "conversation.item.truncate", "item_id": item_id,
                                 "content_index": c, "audio_end_ms": ms},
                  st.integers(0, 2), st.one_of(st.integers(0, 3000), st.just(2**62))),
        st.builds(lambda s: {"type": "session.update", "session": s}, session_payloads(dialect)),
        st.builds(lambda r: {"type": "response.create", **({"response": r} if r else {})},
                  st.one_of(st.none(), st.fixed_dictionaries({}, optional={
                      "instructions": st.text(max_size=20),
                      "conversation": st.sampled_from(["auto", "none"]),
                      "max_output_tokens": st.integers(1, 50)}))),
        st.builds(lambda r: {"type": "response.cancel", **({"response_id": r} if r else {})},
                  st.one_of(st.none(), st.integers(0, 63).map(
                      lambda i: responses[-1 - i % len(responses)]), st.just("resp_x"))),
    ]
    if dialect is Dialect.BETA:
        choices.append(st.builds(lambda s: {"type": "transcription_session.update", "session": s},
                                 st.just({"input_audio_transcription": {"model": "whisper-1"}})))
    if dialect is Dialect.VOICE_LIVE:
        choices += [st.just({"type": "input_audio.turn.start", "turn_id": turn_id}),
                    st.just({"type": "input_audio.turn.append", "turn_id": turn_id,
                             "audio": pcm16_b64(0.1, 0.3)}),
                    st.just({"type": "input_audio.turn.end", "turn_id": turn_id}),
                    st.just({"type": "input_audio.turn.cancel", "turn_id": turn_id}),
                    st.just({"type": "input_audio.clear"})]
    event = draw(st.one_of(choices))
    if draw(st.booleans()):
        event["event_id"] = f"evt_{draw(st.integers(0, 10**6))}"
    return event


@st.composite
def cases(draw: st.DrawFn, live: Live) -> Case | float:
    """The next thing to do: a frame, or a pause (seconds) so a response runs meanwhile."""
    source = draw(st.sampled_from(["vocab"] * 6 + ["sdk"] * 3 + ["junk", "pause", "pause"]))
    if source == "pause":
        return draw(st.sampled_from([0.0, 0.002, 0.01]))
    if source == "junk":
        return draw(junk_frames)
    event = draw(vocabulary_event(live) if source == "vocab" else sdk_events(live.dialect))
    case = draw(mutated(event))
    case.exact = source == "vocab"
    return case


def _problems_with_errors(events: list[dict[str, Any]]) -> list[str]:
    problems = []
    for e in events:
        if e["type"] != "error":
            continue
        err = e["error"]
        if err.get("code") == ErrorCode.SERVER_ERROR or err.get("type") == "server_error":
            problems.append(f"server error: {err}")
        elif err.get("code") in PARAM_CODES and not err.get("param") \
                and not any(m in err.get("message", "") for m in NO_PARAM):
            problems.append(f"error without param: {err}")
    return problems


async def _quiet(live: Live, timeout: float = 5.0) -> None:
    """No response running: the one running is cancelled and must end within `timeout`."""
    if live.session.responder.active is not None:
        await live.session.handle_message(json.dumps({"type": "response.cancel"}))
    async with asyncio.timeout(timeout):
        while live.session.responder.active is not None:
            await asyncio.sleep(0.001)
    await live.settle()


_RESET = {Dialect.GA: {"type": "realtime", "output_modalities": ["audio"],
                       "max_output_tokens": "inf"},
          Dialect.BETA: {"modalities": ["text", "audio"], "max_response_output_tokens": "inf"},
          Dialect.VOICE_LIVE: {"modalities": ["text", "audio"],
                               "max_response_output_tokens": "inf"}}


async def _completes_a_turn(live: Live, spoken: bool) -> None:
    """A text item and response.create (or a spoken turn) ends in a completed response.done;
    a session the fuzz made transcription-only transcribes a committed tone instead."""
    await _quiet(live)
    await live.session.handle_message(json.dumps({"type": "session.update",
                                                  "session": _RESET[live.dialect]}))
    tr, before = live.transport, len(live.transport.sent)
    if live.session.config.transcription_only:
        await live.session.handle_message(json.dumps(append_event(tone_pcm16(0.5))))
        await live.session.handle_message(json.dumps({"type": "input_audio_buffer.commit"}))
        await tr.wait_for("input_audio_buffer.committed",
                          tr.types().count("input_audio_buffer.committed") + 1, 5)
        return
    done_before = tr.types().count("response.done")
    if spoken:
        await live.session.handle_message(json.dumps({"type": "input_audio_buffer.clear"}))
        await live.session.handle_message(json.dumps(append_event(tone_pcm16(0.6))))
        await live.session.handle_message(json.dumps({"type": "input_audio_buffer.commit"}))
    else:
        await live.session.handle_message(json.dumps({
            "type": "conversation.item.create", "item": {
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "still there?"}]}}))
    await live.session.handle_message(json.dumps({"type": "response.create"}))
    done = await tr.wait_for("response.done", done_before + 1, 5)
    assert done["response"]["status"] == "completed", (done, tr.sent[before:])


async def _scenario(data: st.DataObject, dialect: Dialect, steps: int) -> int:
    """Returns how many frames were sent."""
    pipe = FakePipeline(token_delay=0.001)
    session, tr, _, task = await start_session(dialect, pipe)
    other_session, other_tr, _, other_task = await start_session(dialect, FakePipeline())
    live, other = Live(dialect, session, tr, task), Live(dialect, other_session, other_tr,
                                                         other_task)
    sent = 0
    try:
        for _ in range(steps):
            case = data.draw(cases(live))
            if isinstance(case, float):
                await asyncio.sleep(case)
                continue
            before = len(tr.sent)
            try:
                await session.handle_message(case.frame)
            except Exception as exc:  # noqa: BLE001 - the property is that none escapes
                pytest.fail(f"{type(exc).__name__} escaped for {case.what}: {case.frame!r:.300}")
            sent += 1
            await live.settle()
            assert not task.done(), f"session ended after {case.what}: {case.frame!r:.300}"
            new = tr.sent[before:]
            if case.invalid:
                errors = [e["error"] for e in new if e["type"] == "error"]
                assert errors, f"no error for {case.what}: {case.frame!r:.300}"
                # an error while decoding (a number out of range) comes before any about fields
                decoding = any(m in err.get("message", "") for err in errors for m in NO_PARAM)
                if case.param is not None and not decoding:
                    named = [err.get("param") or "" for err in errors]
                    assert any(case.param in p if case.exact else p for p in named), \
                        f"{case.what}: no error names {case.param!r}: {errors}"
        await _completes_a_turn(live, spoken=data.draw(st.booleans()))
        await _completes_a_turn(other, spoken=False)
        assert not task.done() and not other_task.done()
        problems = _problems_with_errors(tr.sent)
        assert not problems, problems
        assert not any(e["type"] == "error" for e in other_tr.sent), other_tr.sent
        # the untouched session holds only its own turn
        assert len(other_session.conversation) == 2, list(other_session.conversation)
        for event in tr.sent + other_tr.sent:
            check_event(event, dialect)
    finally:
        for transport, t in ((tr, task), (other_tr, other_task)):
            transport.inbox.put_nowait(None)
            await asyncio.wait_for(t, 10)
    return sent


FRAMES: dict[str, int] = {}


def _run(data: st.DataObject, dialect: Dialect, steps: int) -> None:
    FRAMES[dialect.value] = FRAMES.get(dialect.value, 0) + asyncio.run(
        _scenario(data, dialect, steps))


@pytest.mark.parametrize("dialect", [Dialect.GA, Dialect.BETA, Dialect.VOICE_LIVE])
def test_random_client_events_never_break_a_session(dialect: Dialect) -> None:
    @settings(max_examples=examples(60))
    @given(st.data())
    def run(data: st.DataObject) -> None:
        _run(data, dialect, steps=25)
    run()
