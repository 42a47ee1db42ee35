"""The session's `Pipeline` on Ray Serve handles, with cancellation that reaches the replicas.

Ray does not cancel downstream work when the caller's task is cancelled or stops iterating:
only `.cancel()` on the response object does. Every call here therefore cancels its Serve
response whenever it ends before the replica said it was finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import numpy as np
from ray.serve.handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator

from voxserve.languages import LanguageRequest
from voxserve.models.base import ChatRequest, LlmDelta, SpeechChunk, ToolSpec, Transcript


async def _stream(gen: DeploymentResponse | DeploymentResponseGenerator) -> AsyncGenerator[Any, None]:
    assert isinstance(gen, DeploymentResponseGenerator), "call the handle with stream=True"
    finished = False
    try:
        async for item in gen:
            yield item
        finished = True
    finally:
        if not finished:
            gen.cancel()


class ServePipeline:
    def __init__(self, asr: DeploymentHandle, llm: DeploymentHandle,
                 tts: DeploymentHandle) -> None:
        self._asr = asr
        self._llm_stream = llm.options(stream=True)
        self._llm = llm
        self._tts_stream = tts.options(stream=True)

    async def transcribe(self, audio_16k: np.ndarray, language: LanguageRequest = None,
                         prompt: str | None = None, phrases: tuple[str, ...] = (),
                         word_probabilities: bool = False, noisy: bool = False) -> Transcript:
        response = self._asr.transcribe.remote(audio_16k, language, prompt, phrases,
                                               word_probabilities, noisy)
        try:
            result: Transcript = await response
        except asyncio.CancelledError:
            response.cancel()
            raise
        return result

    async def transcribe_partial(self, audio_16k: np.ndarray, language: LanguageRequest = None,
                                 noisy: bool = False) -> Transcript | None:
        response = self._asr.transcribe_partial.remote(audio_16k, language, noisy)
        try:
            result: Transcript | None = await response
        except asyncio.CancelledError:
            response.cancel()
            raise
        return result

    def chat(self, request: ChatRequest) -> AsyncGenerator[LlmDelta, None]:
        return _stream(self._llm_stream.stream.remote(request))

    def speak(self, text: str, voice: str, speed: float = 1.0) -> AsyncGenerator[SpeechChunk, None]:
        return _stream(self._tts_stream.speak.remote(text, voice, speed))

    async def warm(self, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec] = (),
                   tool_choice: str = "auto") -> None:
        await self._llm.warm.remote(list(messages), tuple(tools), tool_choice)
