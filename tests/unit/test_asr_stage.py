"""The ASR deployment's scheduling, on fake engines: partial re-decodes use idle time only."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from deployments import stages
from models.base import Transcript

pytestmark = pytest.mark.unit


class _SlowEngine:
    name = "fake"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    def transcribe(self, audio_16k: np.ndarray, language: Any = None, prompt: Any = None,
                   **kwargs: Any) -> Transcript:
        self.calls += 1
        time.sleep(self.seconds)  # runs on a worker thread, as a real decode does
        return Transcript("hello there.", "en", audio_16k.size / 16000, decode_seconds=self.seconds)


async def test_a_partial_is_shed_while_the_fast_engine_decodes_and_served_when_idle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    whisper, moonshine = _SlowEngine(0.0), _SlowEngine(0.3)
    monkeypatch.setattr(stages, "build_asr", lambda opts: whisper)
    monkeypatch.setattr(stages, "build_english_asr", lambda opts: moonshine)
    asr = stages.AsrDeployment.func_or_class({})
    audio = np.zeros(16000, np.float32)
    final = asyncio.create_task(asr.transcribe(audio, "en"))
    while moonshine.calls == 0:  # the turn's decode holds the engine
        await asyncio.sleep(0.01)
    assert await asr.transcribe_partial(audio, "en") is None
    assert (await asr.info())["partials_shed"] == 1
    assert (await final).text == "hello there."
    served = await asr.transcribe_partial(audio, "en")
    assert served is not None and served.text == "hello there." and moonshine.calls == 2
    # turns Whisper serves get no partials at all: it is too slow to re-decode
    assert await asr.transcribe_partial(audio, "es") is None
    assert await asr.transcribe_partial(audio, "en", noisy=True) is None
    assert whisper.calls == 0
