"""The listener alone: scripted audio, scripted pause signals and an injected clock.

Every signal the listener waits for (the early decode, the audio end-of-turn model) is a future
the test resolves, so each test decides exactly when a judgement lands relative to the audio.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.unit.fakes import Clock, EnergyVad, silence_pcm16, tone_pcm16
from voxserve.audio.formats import AudioFormat
from voxserve.config import VadOptions
from voxserve.models.base import Transcript
from voxserve.protocol.errors import ProtocolError
from voxserve.protocol.session_config import TurnDetection
from voxserve.session.end_of_turn import EAGERNESS
from voxserve.session.listener import (
    Heard, IdleTimedOut, Listener, SpeechStarted, TurnEnded,
)
from voxserve.session.tasks import TaskOwner
from voxserve.session.turn import Turn

pytestmark = pytest.mark.unit

PCM = AudioFormat()  # pcm16 at 24 kHz, as the wire default


class ScriptedSignals:
    """Each decode / audio-model call waits on a future the test resolves (or sees cancelled)."""

    def __init__(self) -> None:
        self.decodes: list[asyncio.Future[Transcript | Exception]] = []
        self.audio_ps: list[asyncio.Future[float | None]] = []
        self.decoded_audio: list[np.ndarray] = []
        self.cancelled = 0

    async def decode(self, audio: np.ndarray) -> Transcript | Exception:
        future: asyncio.Future[Transcript | Exception] = asyncio.get_running_loop().create_future()
        self.decodes.append(future)
        self.decoded_audio.append(audio)
        return await self._wait(future)

    async def audio_p(self, audio: np.ndarray) -> float | None:
        future: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        self.audio_ps.append(future)
        return await self._wait(future)

    async def _wait(self, future):  # type: ignore[no-untyped-def]
        try:
            return await future
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def settle() -> None:
    """Let every task that can run, run: the fakes do no I/O and start no threads, so a judgement
    whose signal was just resolved has acted after a bounded number of loop turns."""
    for _ in range(20):
        await asyncio.sleep(0)


def listener_for(td: TurnDetection | None, **vad: int):  # type: ignore[no-untyped-def]
    heard: list[Heard] = []
    signals = ScriptedSignals()
    clock = Clock()

    async def on_heard(event: Heard) -> None:
        heard.append(event)
    listener = Listener(vad_factory=EnergyVad, vad=VadOptions(**vad), max_buffer_seconds=120.0,
                        decode=signals.decode, audio_p=signals.audio_p,
                        tasks=TaskOwner(asyncio.ensure_future),
                        begin_turn=lambda t: Turn(speech_end=t), on_heard=on_heard, clock=clock)
    listener.configure(td)
    return listener, heard, signals, clock


def kinds(heard: list[Heard]) -> list[str]:
    return [type(h).__name__ for h in heard]


async def test_a_server_vad_turn_ends_after_the_silence_with_the_early_decode() -> None:
    listener, heard, signals, clock = listener_for(TurnDetection(silence_duration_ms=500))
    await listener.append(silence_pcm16(0.5) + tone_pcm16(1.0), PCM)
    assert kinds(heard) == ["SpeechStarted", "SpeechLasted"]
    started = heard[0]
    assert isinstance(started, SpeechStarted)
    assert started.audio_start == started.onset - 300 * 16  # prefix padding
    await listener.append(silence_pcm16(0.3), PCM)
    await settle()
    assert len(signals.decodes) == 1  # the decode started at the 200 ms pause
    clock.now = 101.5
    await listener.append(silence_pcm16(0.3), PCM)
    ended = heard[-1]
    assert isinstance(ended, TurnEnded) and ended.silence_ms == 500
    assert ended.item_id == started.item_id
    assert ended.turn.decided == 101.5 and ended.turn.asr_start == 100.0
    assert 1.5 * 16000 - 600 <= ended.end_sample <= 1.5 * 16000 + 600
    # the turn's audio starts at the prefix padding and runs to the end of the silence heard
    assert ended.audio.size == pytest.approx(2.1 * 16000 - started.audio_start, abs=600)
    assert ended.decoded is not None and not ended.decoded.done()  # handed over, still running
    signals.decodes[0].set_result(Transcript("hello", "en", 1.0))
    assert (await ended.decoded).text == "hello"
    assert listener.buffer.held_samples == 0  # the turn took its audio


@pytest.mark.parametrize("audio_p,words,more_silence,wait", [
    (0.9, None, 0.0, EAGERNESS["medium"].fast),  # a confident audio model: 250 ms, ended already
    (0.3, "I would like a table for two.", 0.3, EAGERNESS["medium"].mid),  # the words decide
    (0.3, "I would like a table for", 1.3, EAGERNESS["medium"].max),  # unfinished: the timeout
])
async def test_semantic_pause_waits_by_what_was_said(audio_p: float, words: str | None,
                                                     more_silence: float, wait: int) -> None:
    listener, heard, signals, _ = listener_for(TurnDetection(type="semantic_vad",
                                                             eagerness="medium"))
    await listener.append(tone_pcm16(1.0) + silence_pcm16(0.3), PCM)
    await settle()
    assert len(signals.audio_ps) == 1 and len(signals.decodes) == 1
    signals.audio_ps[0].set_result(audio_p)
    await settle()
    if words is not None:
        assert not any(isinstance(h, TurnEnded) for h in heard)
        signals.decodes[0].set_result(Transcript(words, "en", 1.0))
        await settle()
        if more_silence > 0.3:  # still short of the wait: nothing yet
            await listener.append(silence_pcm16(0.3), PCM)
            assert not any(isinstance(h, TurnEnded) for h in heard)
            more_silence -= 0.3
        await listener.append(silence_pcm16(more_silence), PCM)
    ended = [h for h in heard if isinstance(h, TurnEnded)]
    assert len(ended) == 1 and ended[0].silence_ms == wait


async def test_resumed_speech_cancels_everything_the_pause_started() -> None:
    listener, heard, signals, _ = listener_for(TurnDetection(type="semantic_vad",
                                                             eagerness="high"))
    await listener.append(tone_pcm16(0.8) + silence_pcm16(0.6), PCM)
    await settle()
    assert len(signals.decodes) == 1 and len(signals.audio_ps) == 1
    await listener.append(tone_pcm16(0.8), PCM)
    await settle()
    assert signals.cancelled == 2  # the decode and the judgement, at once
    assert not any(isinstance(h, TurnEnded) for h in heard)
    signals.audio_ps.clear()
    await listener.append(silence_pcm16(0.3), PCM)  # a second pause opens a fresh scope
    await settle()
    assert len(signals.decodes) == 2 and len(signals.audio_ps) == 1


async def test_speech_lasted_is_reported_once_per_speech() -> None:
    listener, heard, _, _ = listener_for(TurnDetection(), interrupt_min_ms=600)
    await listener.append(tone_pcm16(0.3) + silence_pcm16(0.8), PCM)
    assert "SpeechLasted" not in kinds(heard)  # a 300 ms burst does not last
    await listener.append(tone_pcm16(0.5), PCM)
    await listener.append(tone_pcm16(0.5), PCM)
    assert kinds(heard).count("SpeechLasted") == 1


async def test_idle_timeout_counts_on_the_audio_clock_from_when_the_agent_went_quiet() -> None:
    listener, heard, _, _ = listener_for(TurnDetection(idle_timeout_ms=2000))
    await listener.append(silence_pcm16(3.0), PCM)
    assert heard == []  # the clock runs only once the agent has spoken and gone quiet
    listener.start_idle_clock()
    await listener.append(silence_pcm16(1.5), PCM)
    assert heard == []
    await listener.append(silence_pcm16(1.0), PCM)
    (fired,) = heard
    assert isinstance(fired, IdleTimedOut)
    assert fired.end_sample - fired.start_sample >= 2000 * 16
    # of the silence only the prefix-padding window kept between appends (and the last append)
    # is still held, and handed over
    assert fired.audio.size <= (300 + 100 + 1000) * 16 + 512


async def test_between_turns_only_the_prefix_padding_is_kept() -> None:
    listener, _, _, _ = listener_for(TurnDetection(prefix_padding_ms=300))
    for _ in range(10):
        await listener.append(silence_pcm16(1.0), PCM)
    assert listener.buffer.held_samples <= (300 + 100) * 16 + 640


async def test_a_client_turn_bypasses_the_vad_and_reports_what_it_held() -> None:
    listener, heard, _, _ = listener_for(TurnDetection())
    listener.open_client_turn("t1")
    await listener.append(tone_pcm16(0.5) + silence_pcm16(1.0) + tone_pcm16(0.5), PCM)
    assert heard == []
    with pytest.raises(ProtocolError) as wrong:
        listener.check_client_turn("t2")
    assert wrong.value.param == "turn_id"
    _, audio = listener.end_client_turn("t1")
    assert audio.size == pytest.approx(2.0 * 16000, abs=400)  # less the resampler's delay
    listener.open_client_turn("t3")
    await listener.append(tone_pcm16(0.05, rate=16000), AudioFormat("pcm16", 16000))
    with pytest.raises(ProtocolError) as empty:
        listener.end_client_turn("t3")
    assert "50 ms" in empty.value.message  # what it held, not what was left after clearing
    assert listener.buffer.held_samples == 0


async def test_cancel_stops_the_open_pause() -> None:
    listener, _, signals, _ = listener_for(TurnDetection(type="semantic_vad"))
    await listener.append(tone_pcm16(0.8) + silence_pcm16(0.3), PCM)
    await settle()
    listener.cancel()
    await settle()
    assert signals.cancelled == 2
