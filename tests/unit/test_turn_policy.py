"""Turn taking alone: scripted `Heard` events against a talking agent, no audio and no VAD.

The session is served (its parts need the connection's task group), but nothing goes through the
listener: each test hands `TurnTaking.on` the events a listener would report.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.unit.fakes import FakePipeline, start_session
from voxserve.models.base import Transcript
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.session_config import TurnDetection
from voxserve.session.listener import SpeechLasted, SpeechStarted, TurnEnded
from voxserve.session.turn import Turn

pytestmark = pytest.mark.unit

TD = TurnDetection()


async def _talking(**overrides):  # type: ignore[no-untyped-def]
    # 60 words in sentences of ten: ~16 s of speech that plays on while the user talks
    words = [f"word{i}" + (". " if i % 10 == 9 else " ") for i in range(60)]
    pipe = FakePipeline(tokens=words, token_delay=0.02)
    session, tr, _, task = await start_session(Dialect.BETA, pipe, **overrides)
    tr.push({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "talk"}]}})
    tr.push({"type": "response.create"})
    await tr.wait_for("response.audio.delta")
    return session, tr, pipe, task


def _said(text: str) -> asyncio.Task[Transcript | Exception]:
    async def decode() -> Transcript | Exception:
        return Transcript(text, "en", 0.4)
    return asyncio.ensure_future(decode())


def _burst_ended(item_id: str, text: str) -> TurnEnded:
    return TurnEnded(item_id=item_id, audio=np.zeros(6400, np.float32), end_sample=6400,
                     silence_ms=500, turn=Turn(speech_end=0.0), decoded=_said(text), td=TD)


async def _stop(tr, task) -> None:  # type: ignore[no-untyped-def]
    tr.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)


async def test_speech_over_the_answer_holds_it_and_a_backchannel_resumes_it() -> None:
    session, tr, pipe, task = await _talking()
    await session.turns.on(SpeechStarted("item_burst", 1000, 0, TD))
    assert session.turns.interruption is not None
    deltas = tr.types().count("response.audio.delta")
    await session.turns.on(_burst_ended("item_burst", "Mhm."))
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    assert tr.types().count("response.audio.delta") > deltas  # it went on after the burst
    assert "input_audio_buffer.committed" not in tr.types()  # the burst was no turn
    assert session.turns.interruption is None and pipe.chat_cancelled == 0
    await _stop(tr, task)


async def test_a_burst_with_words_cancels_the_answer_and_becomes_the_turn() -> None:
    session, tr, pipe, task = await _talking()
    await session.turns.on(SpeechStarted("item_burst", 1000, 0, TD))
    await session.turns.on(_burst_ended("item_burst", "Stop, what about Paris?"))
    cut = await tr.wait_for("response.done")
    assert cut["response"]["status_details"]["reason"] == "turn_detected"
    committed = await tr.wait_for("input_audio_buffer.committed")
    assert committed["item_id"] == "item_burst"
    await tr.wait_for("response.done", 2)  # the answer to the burst
    assert pipe.requests[-1].messages[-1]["content"] == "Stop, what about Paris?"
    await _stop(tr, task)


async def test_speech_that_lasts_confirms_the_interruption_at_once() -> None:
    session, tr, pipe, task = await _talking()
    await session.turns.on(SpeechStarted("item_long", 1000, 0, TD))
    await session.turns.on(SpeechLasted())
    done = await tr.wait_for("response.done")
    assert done["response"]["status_details"]["reason"] == "turn_detected"
    assert session.turns.interruption is None and session.responder.active is None
    assert pipe.chat_cancelled == 1
    await _stop(tr, task)


async def test_interrupt_response_false_leaves_the_answer_alone() -> None:
    session, tr, pipe, task = await _talking()
    await session.turns.on(SpeechStarted("item_x", 1000, 0, TurnDetection(interrupt_response=False)))
    assert session.turns.interruption is None
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "completed"
    await _stop(tr, task)


async def test_interrupt_min_zero_cancels_on_speech_started() -> None:
    session, tr, pipe, task = await _talking(interrupt_min_ms=0)
    await session.turns.on(SpeechStarted("item_x", 1000, 0, TD))
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "cancelled"
    await _stop(tr, task)


async def test_disconnect_cancels_the_burst_judgement_and_its_decode() -> None:
    session, tr, pipe, task = await _talking()
    await session.turns.on(SpeechStarted("item_burst", 1000, 0, TD))
    never: asyncio.Future[Transcript | Exception] = asyncio.get_running_loop().create_future()

    async def stuck() -> Transcript | Exception:
        return await never
    decode = asyncio.ensure_future(stuck())
    await session.turns.on(TurnEnded("item_burst", np.zeros(6400, np.float32), 6400, 500,
                                     Turn(speech_end=0.0), decode, TD))
    await _stop(tr, task)  # returns only once every owned task is done
    assert decode.cancelled() and never.cancelled()
