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

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conformance import check_event
from tests.fuzz import NO_PARAM, cases, error_problems, examples
from tests.unit.fakes import FakePipeline, FakeTransport, append_event, start_session, tone_pcm16
from voxserve.config import LimitsOptions
from voxserve.protocol.dialects import Dialect
from voxserve.session.session import RealtimeSession

pytestmark = pytest.mark.unit

# The fuzz sends faster than any client may (hundreds of frames, minutes of audio, in a
# moment); the rate limits have their own tests (test_limits.py), here they would only hide
# the frames' answers behind one coalesced `rate_limited` notice.
UNLIMITED = LimitsOptions(max_events_per_second=1e9, event_burst=10**9, max_audio_speed=1e9,
                          audio_burst_seconds=1e9)


class Live:
    """One fuzzed session and what the test knows of it."""

    def __init__(self, dialect: Dialect, session: RealtimeSession, transport: FakeTransport,
                 task: asyncio.Task[None]) -> None:
        self.dialect, self.session, self.transport, self.task = dialect, session, transport, task

    async def settle(self) -> None:
        """Until the writer has handed every queued event to the transport."""
        while not self.session._outbox.empty():
            await asyncio.sleep(0)


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
    session, tr, _, task = await start_session(dialect, pipe, limits=UNLIMITED)
    other_session, other_tr, _, other_task = await start_session(dialect, FakePipeline(),
                                                                 limits=UNLIMITED)
    live, other = Live(dialect, session, tr, task), Live(dialect, other_session, other_tr,
                                                         other_task)
    sent = 0
    try:
        for _ in range(steps):
            case = data.draw(cases(dialect, tr.sent))
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
                # (the SDK shapes' floats include NaN, which json.dumps writes and JSON has not)
                decoding = any(err.get("code") == "invalid_json"
                               or any(m in err.get("message", "") for m in NO_PARAM)
                               for err in errors)
                if case.param is not None and not decoding:
                    named = [err.get("param") or "" for err in errors]
                    assert any(case.param in p if case.exact else p for p in named), \
                        f"{case.what}: no error names {case.param!r}: {errors}"
        await _completes_a_turn(live, spoken=data.draw(st.booleans()))
        await _completes_a_turn(other, spoken=False)
        assert not task.done() and not other_task.done()
        problems = error_problems(tr.sent)
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
