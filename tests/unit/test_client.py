"""The realtime client's building blocks and the benchmarks' shared helpers: loudness scan, PCM16
framing, event names and encoding, percentiles, packaged model names. No server, no models."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

from voxserve.audio.formats import AudioFormat
from voxserve.bench.report import pct, percentile
from voxserve.client import (
    FRAME_MS,
    RATE,
    audible_frames,
    event_text,
    first_audible_s,
    is_event,
    pcm16_frames,
    pcm16_samples,
    send_speech,
    speech_end_s,
    speech_start_s,
)
from voxserve.models.factory import _resolve
from voxserve.protocol.client_events import (
    InputAudioBufferAppendEvent,
    ResponseCreateEvent,
    SessionUpdateEvent,
    parse_client_event,
)
from voxserve.protocol.server_events import (
    AudioDeltaEvent,
    ItemAddedEvent,
    TimeoutTriggeredEvent,
    WarningEvent,
    wire_names,
)

pytestmark = pytest.mark.unit


def _tone(seconds: float, amplitude: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def test_speech_bounds_are_the_first_and_last_audible_frames() -> None:
    audio = np.concatenate([_silence(0.5), _tone(1.0), _silence(0.7)])
    assert speech_start_s(audio) == pytest.approx(0.5)
    assert speech_end_s(audio) == pytest.approx(1.5)
    assert first_audible_s(audio) == pytest.approx(0.5)
    quiet = np.concatenate([_silence(0.2), _tone(0.5, amplitude=0.005)])  # below -40 dBFS
    assert speech_start_s(quiet) == speech_end_s(quiet) == 0.0
    assert first_audible_s(quiet) is None and first_audible_s(np.zeros(0, np.float32)) is None


def test_a_short_loud_last_frame_counts_and_ends_the_speech_where_the_samples_end() -> None:
    audio = np.concatenate([_silence(0.1), _tone(0.005)])  # 5 ms: a quarter of a 20 ms frame
    assert audible_frames(audio).tolist() == [int(0.1 * RATE)]
    assert speech_end_s(audio) == pytest.approx(audio.size / RATE)


def test_answer_onset_is_found_to_ten_milliseconds() -> None:
    delta = np.concatenate([_silence(0.03), _tone(0.07)])
    assert first_audible_s(delta) == pytest.approx(0.03)


def test_pcm16_frames_round_to_the_nearest_step_and_decode_back() -> None:
    audio = np.concatenate([_tone(0.1), np.full(10, 0.6 / 32767, np.float32)])
    frames = pcm16_frames(audio, tail_silence_s=0.05)
    step = RATE * FRAME_MS // 1000
    assert len(frames) == math.ceil((audio.size + int(0.05 * RATE)) / step)
    decoded = np.concatenate([pcm16_samples(f) for f in frames])
    assert decoded.size == audio.size + int(0.05 * RATE)
    codec = AudioFormat("pcm16", RATE)
    assert np.array_equal(decoded[: audio.size], codec.decode(codec.encode(audio)))
    assert decoded[audio.size - 1] == pytest.approx(1 / 32768)  # 0.6 of a step rounds up
    assert not decoded[audio.size:].any()


def test_wire_names_cover_every_dialect_that_sends_the_event() -> None:
    assert wire_names(AudioDeltaEvent) == {"response.output_audio.delta", "response.audio.delta"}
    assert wire_names(ItemAddedEvent) == {"conversation.item.added", "conversation.item.created"}
    assert wire_names(TimeoutTriggeredEvent) == {"input_audio_buffer.timeout_triggered"}
    assert wire_names(WarningEvent) == {"warning"}
    assert is_event({"type": "response.audio.delta"}, AudioDeltaEvent)
    assert not is_event({"type": "response.audio.done"}, AudioDeltaEvent)
    assert not is_event({}, AudioDeltaEvent)


def test_event_text_leaves_out_unset_fields_and_parses_back() -> None:
    assert event_text(ResponseCreateEvent(type="response.create")) == '{"type":"response.create"}'
    update = SessionUpdateEvent(type="session.update",
                                session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    text = event_text(update)
    assert '"turn_detection":null' in text  # a null inside the payload is kept: it means "off"
    assert parse_client_event(text) == update


def test_send_speech_streams_append_events_of_the_whole_recording() -> None:
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    audio = _tone(0.3)
    asyncio.run(send_speech(send, audio, 0.1, realtime=False))
    events = [parse_client_event(s) for s in sent]
    assert all(isinstance(e, InputAudioBufferAppendEvent) for e in events)
    samples = np.concatenate([pcm16_samples(e.audio) for e in events
                              if isinstance(e, InputAudioBufferAppendEvent)])
    assert samples.size == audio.size + int(0.1 * RATE)
    assert speech_end_s(samples) == pytest.approx(0.3)


def test_percentile_is_nearest_rank_and_pct_is_ordered() -> None:
    values = [40.0, 10.0, 30.0, 20.0]
    assert percentile(values, 50) == 20.0  # a measured value, not the 25.0 between two
    assert percentile(values, 100) == 40.0
    assert math.isnan(percentile([], 50))
    summary = pct([float(v) for v in range(1, 101)])
    assert summary["n"] == 100
    assert summary["p50"] <= summary["p90"] <= summary["p95"] <= summary["p99"] == 99.0
    assert pct([]) == {"n": 0}


def test_packaged_model_names_resolve_or_fail_with_the_known_names() -> None:
    known = {"a": lambda: Path("/cache/a"), "b": lambda: Path("/cache/b")}
    assert _resolve("ASR model", "/models/whisper", known) == "/models/whisper"
    assert _resolve("ASR model", "packaged:b", known) == "/cache/b"
    with pytest.raises(ValueError, match="unknown packaged ASR model 'packaged:c'; packaged: a, b"):
        _resolve("ASR model", "packaged:c", known)
