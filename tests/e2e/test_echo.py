"""Server echo cancellation through the Voice Live client on the real stack: the agent's long
answer on a simulated speakerphone (bench/echo_sim.py: played in real time, back into the
microphone after 200 ms at half gain through a room) interrupts itself without AEC and not with
it, while a user talking over it is still heard; a two-channel session, where the client sends
its own reference, completes a spoken turn."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
import pytest

from bench.aec import Answer, play_answer
from bench.echo_sim import EchoRoom
from tests import long_answer
from tests.conformance import check_event
from tests.e2e.conftest import Server
from tests.e2e.test_drop_in import _voice_live
from tests.e2e.test_spoken_turn import _paced
from tests.speech import clip, wer
from voxserve.audio.formats import AudioFormat
from voxserve.client import RATE, read_wav
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.e2e

TIMEOUT_S = 240


async def _session(conn: Any, settings: dict[str, Any]) -> tuple[Any, Any]:
    async def send(event: dict[str, Any]) -> None:
        await conn.send(event)

    async def recv() -> dict[str, Any]:
        event = dict((await asyncio.wait_for(conn.recv(), TIMEOUT_S)).as_dict())
        check_event(event, Dialect.VOICE_LIVE)
        return event

    await send({"type": "session.update", "session": settings})
    while (event := await recv())["type"] != "session.updated":
        assert event["type"] != "error", event
    return send, recv


async def _speakerphone_answer(server: Server, echo: bool,
                               user: np.ndarray | None = None) -> Answer:
    async with _voice_live(server) as conn:
        send, recv = await _session(conn, {
            "modalities": ["text", "audio"], "instructions": long_answer.INSTRUCTIONS,
            "turn_detection": {"type": "server_vad"},
            "input_audio_echo_cancellation": ({"type": "server_echo_cancellation"} if echo
                                              else None)})
        for item in long_answer.conversation_items():
            await send({"type": "conversation.item.create", "item": item})
        await send({"type": "response.create"})
        room = EchoRoom(delay_ms=200, gain=0.5, reverb_ms=120, seed=5)
        return await play_answer(send, recv, room, user=user, user_after_s=8.0,
                                 timeout_s=TIMEOUT_S)


async def test_without_echo_cancellation_the_agent_interrupts_itself(server: Server) -> None:
    answer = await _speakerphone_answer(server, echo=False)
    assert answer.self_interruptions, "the echo never triggered speech_started: the test's " \
        "room is too quiet to show what echo cancellation does"


async def test_with_echo_cancellation_only_the_user_interrupts(server: Server) -> None:
    user = read_wav(clip("0920")[0])[:int(3 * RATE)]
    answer = await _speakerphone_answer(server, echo=True, user=user)
    assert answer.user_onset_s is not None, f"the answer stopped after {answer.played_s:.1f} s"
    assert not answer.self_interruptions, f"echo heard as speech at {answer.self_interruptions}"
    detected = answer.user_detected_after_s
    assert detected is not None and detected < 1.0, f"user speech detected after {detected} s"
    assert answer.status == "cancelled"  # the user's barge-in ended the answer


async def test_a_client_reference_session_completes_a_spoken_turn(server: Server) -> None:
    wav, words = clip("0880")  # "he was not an ill disposed young man"
    question = read_wav(wav)
    mic = np.concatenate([question, np.zeros(int(1.5 * RATE), np.float32)])
    reference = np.zeros_like(mic)  # nothing playing yet: the reference channel is silent
    stereo = AudioFormat("pcm16", RATE).encode(np.stack([mic, reference], axis=1).reshape(-1))
    step = 4 * RATE * 40 // 1000  # 40 ms of two-channel pcm16
    frames = [base64.b64encode(stereo[i:i + step]).decode() for i in range(0, len(stereo), step)]
    async with _voice_live(server) as conn:
        send, recv = await _session(conn, {
            "modalities": ["text", "audio"], "turn_detection": {"type": "server_vad"},
            "input_audio_transcription": {"model": "whisper-1"},
            "input_audio_echo_cancellation": {"type": "server_echo_cancellation",
                                              "reference_source": "client", "channels": 2}})
        sender = asyncio.create_task(_paced(frames, lambda f: conn.input_audio_buffer.append(
            audio=f)))
        transcript = None
        while (event := await recv())["type"] != "response.done":
            assert event["type"] != "error", event
            if event["type"] == "conversation.item.input_audio_transcription.completed":
                transcript = event["transcript"]
        await sender
    assert event["response"]["status"] == "completed"
    # the two-channel path delivered the words: Moonshine hears "ill-sposed" (one word of eight)
    assert transcript is not None and wer(words, transcript) <= 0.25, transcript
