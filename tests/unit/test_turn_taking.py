"""Semantic end of turn and false-interruption handling, with fakes for the models."""

from __future__ import annotations

import asyncio

import pytest

from tests.conformance import check_event
from tests.unit.fakes import (
    FakePipeline, FixedEndOfTurn, append_event, silence_pcm16, start_session, tone_pcm16,
)
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.session_config import EndOfUtterance, TurnDetection
from voxserve.session.end_of_turn import (
    EAGERNESS, is_backchannel, remove_fillers, required_silence_ms, text_complete, waits_for,
)

pytestmark = pytest.mark.unit


def test_text_completeness_reads_unfinished_endings() -> None:
    assert text_complete("I would like to book a table.") is True
    assert text_complete("I would like to book a table and") is False
    assert text_complete("Can you tell me about the") is False
    assert text_complete("so I was thinking, um") is False
    assert text_complete("Well, let me think...") is False
    assert text_complete("  ") is None


def test_backchannels_have_no_content_words() -> None:
    for text in ("Mhm.", "yeah", "Okay, okay.", "Uh-huh", "oh", "", "I see."):
        assert is_backchannel(text), text
    for text in ("Stop.", "wait, what about Paris?", "no thanks", "Thank you.", "I got it wrong",
                 "It"):
        assert not is_backchannel(text), text
    assert remove_fillers("So um I think uh, yes") == "So I think yes"


def test_waits_follow_eagerness_and_voice_live_levels() -> None:
    assert waits_for(TurnDetection(type="server_vad")) is None
    assert waits_for(TurnDetection(type="semantic_vad", eagerness="high")) == EAGERNESS["high"]
    assert waits_for(TurnDetection(type="semantic_vad")) == EAGERNESS["medium"]
    vl = waits_for(TurnDetection(type="azure_semantic_vad", end_of_utterance_detection=EndOfUtterance(
        threshold_level="high", timeout_ms=900)))
    assert vl is not None and vl.max == 900 and vl.fast == EAGERNESS["low"].fast
    # end_of_utterance_detection turns server_vad semantic too (Voice Live)
    assert waits_for(TurnDetection(type="server_vad",
                                   end_of_utterance_detection=EndOfUtterance())) is not None
    w = EAGERNESS["medium"]
    assert required_silence_ms(w, 0.9, None) == w.fast
    assert required_silence_ms(w, 0.2, None) == w.max  # unsure audio: wait for the words
    assert required_silence_ms(w, 0.9, False) == w.max  # the words are unfinished
    assert required_silence_ms(w, 0.2, True) == w.mid
    assert required_silence_ms(w, None, None) == w.max


async def _turn_events_after(tr, marker: str):  # type: ignore[no-untyped-def]
    """A round trip through the handler queue: every event before it has been processed."""
    tr.push({"type": "conversation.item.retrieve", "item_id": marker})
    await tr.wait_for("error", sum(1 for e in tr.sent if e["type"] == "error") + 1)
    return tr.types()


async def test_semantic_vad_ends_at_once_when_both_signals_say_complete() -> None:
    """Through the whole session (the listener's own tests script each signal's timing)."""
    eot = FixedEndOfTurn(0.9)
    session, tr, pipe, task = await start_session(
        Dialect.GA, FakePipeline(transcript="I would like a table for two."), eot_model=eot)
    tr.push({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "semantic_vad", "eagerness": "medium",
                           "create_response": False}}}}})
    await tr.wait_for("session.updated")
    # 300 ms of silence: past the 200 ms pause mark and the 250 ms fast wait, short of 500 ms;
    # no more audio is needed: the judgement itself ends the turn
    tr.push(append_event(tone_pcm16(1.0) + silence_pcm16(0.3)))
    await tr.wait_for("input_audio_buffer.committed")
    assert eot.calls == 1
    tr.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)
    for event in tr.sent:
        check_event(event, Dialect.GA)


async def test_resumed_speech_does_not_end_the_turn() -> None:
    session, tr, pipe, task = await start_session(
        Dialect.GA, FakePipeline(transcript="and then"), eot_model=FixedEndOfTurn(0.1))
    tr.push({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}}})
    await tr.wait_for("session.updated")
    tr.push(append_event(tone_pcm16(0.8) + silence_pcm16(0.6) + tone_pcm16(0.8)))
    await _turn_events_after(tr, "m1")
    assert "input_audio_buffer.committed" not in tr.types()  # a 600 ms pause did not end it
    tr.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)


async def _talking_agent(transcript: str, **overrides):  # type: ignore[no-untyped-def]
    # 60 words in sentences of ten: ~16 s of speech that plays on while the user talks
    words = [f"word{i}" + (". " if i % 10 == 9 else " ") for i in range(60)]
    pipe = FakePipeline(tokens=words, token_delay=0.02, transcript=transcript)
    session, tr, _, task = await start_session(Dialect.BETA, pipe, **overrides)
    tr.push(append_event(tone_pcm16(0.6) + silence_pcm16(0.8)))
    await tr.wait_for("response.audio.delta")
    return session, tr, pipe, task


async def test_backchannel_over_the_agent_pauses_then_resumes_it() -> None:
    session, tr, pipe, task = await _talking_agent("Mhm.")
    tr.push(append_event(tone_pcm16(0.3) + silence_pcm16(0.8)))
    await tr.wait_for("input_audio_buffer.speech_stopped", 2)
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "completed"  # resumed and finished
    kinds = tr.types()
    i_start = kinds.index("input_audio_buffer.speech_started", kinds.index("response.created"))
    assert "response.audio.delta" in kinds[i_start:]  # audio went on after the burst
    assert kinds.count("input_audio_buffer.committed") == 1  # the burst was not a turn
    assert kinds.count("response.created") == 1
    assert pipe.chat_cancelled == 0
    tr.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)
    for event in tr.sent:
        check_event(event, Dialect.BETA)


async def test_held_response_sends_nothing_while_a_burst_is_judged() -> None:
    session, tr, pipe, task = await _talking_agent("Mhm.")
    pipe.asr_delay = 0.5  # the burst's transcript takes a while
    tr.push(append_event(tone_pcm16(0.3) + silence_pcm16(0.8)))
    await tr.wait_for("input_audio_buffer.speech_stopped", 2)
    kinds = tr.types()
    i_start = kinds.index("input_audio_buffer.speech_started", kinds.index("response.created"))
    assert "response.audio.delta" not in kinds[i_start:]
    await tr.wait_for("response.done")
    tr.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)


async def test_long_speech_over_the_agent_cancels_before_it_ends() -> None:
    session, tr, pipe, task = await _talking_agent("Mhm.")  # words do not matter: it is long
    tr.push(append_event(tone_pcm16(0.9)))
    done = await tr.wait_for("response.done")
    assert done["response"]["status_details"]["reason"] == "turn_detected"
    kinds = tr.types()
    i_start = kinds.index("input_audio_buffer.speech_started", kinds.index("response.created"))
    # held from speech onset: not one audio delta of it after, not even while it is cancelled
    assert "response.audio.delta" not in kinds[i_start:], kinds[i_start:]
    assert pipe.chat_cancelled == 1
    tr.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)


async def test_interrupt_min_zero_cancels_on_first_speech() -> None:
    session, tr, pipe, task = await _talking_agent("Mhm.", interrupt_min_ms=0)
    tr.push(append_event(tone_pcm16(0.3)))
    done = await tr.wait_for("response.done")
    assert done["response"]["status"] == "cancelled"
    tr.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)


async def test_voice_live_remove_filler_words_and_single_language() -> None:
    session, tr, pipe, task = await start_session(
        Dialect.VOICE_LIVE, FakePipeline(transcript="Um, I want, uh, tea."))
    tr.push({"type": "session.update", "session": {
        "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": {"type": "azure_semantic_vad", "remove_filler_words": True,
                           "languages": ["en-US"], "create_response": False}}})
    await tr.wait_for("session.updated")
    tr.push(append_event(tone_pcm16(0.8) + silence_pcm16(1.2)))
    done = await tr.wait_for("conversation.item.input_audio_transcription.completed")
    assert done["transcript"] == "I want, tea."
    tr.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)


async def test_voice_live_speech_duration_ms_ignores_shorter_sounds() -> None:
    session, tr, pipe, task = await start_session(Dialect.VOICE_LIVE)
    tr.push({"type": "session.update", "session": {"turn_detection": {
        "type": "azure_semantic_vad", "speech_duration_ms": 500, "create_response": False}}})
    await tr.wait_for("session.updated")
    tr.push(append_event(tone_pcm16(0.3) + silence_pcm16(0.5)))  # a click-length sound
    assert "input_audio_buffer.speech_started" not in await _turn_events_after(tr, "m1")
    tr.push(append_event(tone_pcm16(0.8) + silence_pcm16(0.2)))
    await tr.wait_for("input_audio_buffer.speech_started")
    tr.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)


async def test_a_held_answer_leaks_no_audio_while_it_is_cancelled() -> None:
    """A task of the answer blocked on the hold must not get out in the moment between the
    cancel decision and its own cancellation (the answer's task group cancels children a loop
    turn later)."""
    from voxserve.protocol.server_events import AudioDeltaEvent
    from voxserve.session.conversation import Conversation
    from voxserve.session.response import Response

    session, tr, pipe, task = await start_session(Dialect.GA)
    sent: list[object] = []

    async def send(event: object) -> None:
        sent.append(event)
    response = Response(session.options(), Conversation(), pipe, send, "x")
    response.hold()
    child = asyncio.create_task(response._emit(AudioDeltaEvent(
        response_id=response.id, item_id="i", output_index=0, content_index=0, delta="AAAA")))
    await asyncio.sleep(0)
    response.mark_cancelled("turn_detected")
    for _ in range(3):
        await asyncio.sleep(0)  # the loop turns before the child's own cancel arrives
    assert not sent
    child.cancel()
    await asyncio.wait({child})
    await response.finish_unstarted()  # the close-out passes the hold
    assert [type(e).__name__ for e in sent] == ["ResponseCreatedEvent", "ResponseDoneEvent"]
    tr.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)


def test_detector_ends_a_pause_at_the_silence_the_judgement_asks_for() -> None:
    import numpy as np

    from tests.unit.fakes import EnergyVad
    from voxserve.session.turn_detector import Pause, SpeechStop, TurnDetector

    det = TurnDetector(EnergyVad(), TurnDetection(type="semantic_vad"), pause_ms=200)
    det.reset(0)
    tone = (0.3 * np.sin(np.arange(16000) * 0.1)).astype(np.float32)
    events = det.feed(tone) + det.feed(np.zeros(int(0.3 * 16000), np.float32))
    assert any(isinstance(e, Pause) for e in events)
    assert not any(isinstance(e, SpeechStop) for e in events)  # the 1500 ms timeout holds
    assert det.end_if_due() is None
    det.require_silence(250)  # the judgement: complete
    stop = det.end_if_due()
    assert stop is not None and stop.silence_ms == 250 and 16000 <= stop.sample <= 16000 + 512
    assert not det.speaking and det.end_if_due() is None
