"""The audio front end (voxserve/audio/front_end.py, echo.py) on recorded speech: the server's
output as the far end, modelled on a hand-moved clock; a simulated speakerphone (bench/echo_sim.py)
as the room; AEC3 as the engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from bench.echo_sim import EchoRoom
from tests.unit.fakes import Clock
from voxserve.audio.echo import RATE, EchoReference
from voxserve.audio.formats import AudioFormat
from voxserve.audio.front_end import FrontEnd, aec3
from voxserve.audio.resample import resample
from voxserve.client import read_wav

pytestmark = pytest.mark.unit

DATA = Path(__file__).parents[1] / "data"
PCM24 = AudioFormat("pcm16", 24000)
CHUNK = 480  # 20 ms at 24 kHz


def speech(*stems: str) -> np.ndarray:
    return np.concatenate([read_wav(DATA / f"sense_and_sensibility_01_austen_64kb-{s}.wav")
                           for s in stems])


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-12))


def test_the_reference_is_what_plays_when_and_stops_on_a_flush() -> None:
    clock = Clock()
    ref = EchoReference(clock)
    tone = np.ones(2400, np.float32)  # 100 ms at 24 kHz
    ref.play(100.5, tone, 24000)
    ref.play(100.6, tone, 24000)  # continues the run sample-exactly
    window = ref.read(100.4, 16000 // 2)  # 100.4 .. 100.9
    assert np.all(window[:1600] == 0)  # nothing played before 100.5
    assert np.all(np.abs(window[1700:4400] - 1) < 0.05)  # 200 ms of the tone
    assert np.all(window[5000:] == 0)
    ref.play(101.0, tone, 24000)
    ref.stop(101.05)  # the client stopped half way through
    after = ref.read(101.0, 1600)
    assert np.abs(after[100:700] - 1).max() < 0.05 and np.all(after[820:] == 0)
    ref.read(102.0, 160)  # reads move on: what ended before is forgotten
    assert ref.held_samples == 0


def test_without_settings_it_only_decodes_and_resamples_whatever_the_chunks() -> None:
    audio = speech("0870")[:24000]
    pcm = PCM24.encode(audio)
    whole = FrontEnd().process(pcm, PCM24)
    chunked_fe = FrontEnd()
    pieces = [chunked_fe.process(pcm[i:i + 966], PCM24) for i in range(0, len(pcm), 966)]
    assert not chunked_fe.processing and chunked_fe.frames == 0
    chunked = np.concatenate(pieces)
    n = min(whole.size, chunked.size)
    assert n > 15000 and np.allclose(whole[:n - 200], chunked[:n - 200], atol=1e-4)


def test_two_channel_input_keeps_the_microphone_and_needs_whole_frames() -> None:
    fe = FrontEnd(echo=aec3(), client_reference=True)
    mic, ref = speech("0870")[:4800], np.zeros(4800, np.float32)
    out = fe.process(PCM24.encode(np.stack([mic, ref], axis=1).reshape(-1)), PCM24)
    assert 2800 < out.size <= 3200  # 200 ms at 16 kHz (less the resampler's delay): one channel
    assert fe.seconds(4 * 4800, PCM24) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="whole frames"):
        fe.process(PCM24.encode(np.zeros(3, np.float32)), PCM24)


def _speakerphone(client_reference: bool, seconds: float = 14.0, user_at: float = 10.0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The agent's answer played on a speakerphone (180 ms echo path, gain 0.5, a room) into a
    microphone streamed through the front end in 20 ms chunks; a user talks over it from
    `user_at`. Returns (microphone, front-end output, the user alone, the sample the user
    starts), at 16 kHz."""
    clock = Clock()
    reference = None if client_reference else EchoReference(clock)
    fe = FrontEnd(echo=aec3(), reference=reference, client_reference=client_reference,
                  clock=clock)
    room = EchoRoom(delay_ms=180, gain=0.5, reverb_ms=120, seed=1)
    answer = np.concatenate([speech("0870", "0880", "0890")] * 3)[:int(24000 * seconds)]
    user = speech("0920")
    mics, outs = [], []
    for i in range(0, answer.size, CHUNK):
        piece = answer[i:i + CHUNK]
        # the server sends the piece and its playback starts now; the client plays it at once
        if reference is not None:
            reference.play(clock(), piece, 24000)
        room.received(piece)
        if i == int(24000 * user_at):
            room.say(user, 0.8)
        mic = room.mic(piece.size)
        clock.now += piece.size / 24000
        wire = (np.stack([mic, room.last[1]], axis=1).reshape(-1) if client_reference else mic)
        outs.append(fe.process(PCM24.encode(wire), PCM24))
        mics.append(mic)
    near = resample(np.concatenate(mics), 24000, RATE)
    return near, np.concatenate(outs), resample(0.8 * user, 24000, RATE), int(RATE * user_at)


@pytest.mark.parametrize("client_reference", [False, True], ids=["server", "client"])
def test_echo_is_removed_and_a_user_over_it_is_kept(client_reference: bool) -> None:
    near, out, alone, user = _speakerphone(client_reference)
    n = min(near.size, out.size)
    near, out = near[:n], out[:n]
    converged = slice(3 * RATE, user)  # echo alone, after AEC3 has found the delay
    erle = db(near[converged]) - db(out[converged])
    assert erle > 20, f"echo reduced by only {erle:.1f} dB"
    # double talk: the user's speech stays within a few dB of itself while the echo goes
    kept = db(out[user:user + 2 * RATE]) - db(alone[:2 * RATE])
    assert kept > -9, f"the user over the echo lost {-kept:.1f} dB"


class RecordingEchoCanceller:
    """Keeps the far end it is given; passes the microphone through."""

    def __init__(self) -> None:
        self.far: list[np.ndarray] = []

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        self.far.append(far.copy())
        return near


async def test_the_sessions_own_answer_is_the_far_end_until_the_client_stops_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from tests.unit.fakes import append_event, silence_pcm16, start_session, stop_session
    from voxserve.protocol.dialects import Dialect
    from voxserve.session import session as session_module

    aec = RecordingEchoCanceller()
    monkeypatch.setattr(session_module, "aec3", lambda: aec)
    session, tr, _, task = await start_session(Dialect.VOICE_LIVE)
    await session.handle_message(json.dumps({"type": "session.update", "session": {
        "turn_detection": None,
        "input_audio_echo_cancellation": {"type": "server_echo_cancellation"}}}))
    await session.handle_message(json.dumps({"type": "response.create"}))
    await tr.wait_for("response.done")  # 1.5 s of fake speech, sent at once: now playing
    await asyncio.sleep(0.3)  # the microphone chunk below was captured while it played
    await session.handle_message(json.dumps(append_event(silence_pcm16(0.2))))
    playing = np.concatenate(aec.far)
    assert np.abs(playing).max() > 0.2  # the answer's 0.3-peak tone, as the far end
    await session.handle_message(json.dumps({"type": "output_audio_buffer.clear"}))
    aec.far.clear()
    await asyncio.sleep(0.2)  # the next 200 ms of microphone, captured after the clear
    await session.handle_message(json.dumps(append_event(silence_pcm16(0.2))))
    # the client stopped playing it (this chunk starts where the last ended, a moment before)
    assert np.abs(np.concatenate(aec.far)[RATE // 100:]).max() == 0
    await stop_session(tr, task, Dialect.VOICE_LIVE)
