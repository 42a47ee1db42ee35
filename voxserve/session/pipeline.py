"""The narrow interface a session uses to reach ASR, the LLM and TTS.

Streams are async iterators; closing one (or cancelling the task iterating it) must stop the
work behind it. The Ray implementation guarantees that by calling `.cancel()` on the Serve
streaming call, since Ray does not propagate a consumer's cancellation by itself.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any, Protocol

import numpy as np

from voxserve.languages import LanguageRequest
from voxserve.models.base import ChatRequest, LlmDelta, SpeechChunk, ToolSpec, Transcript


class Pipeline(Protocol):
    async def transcribe(self, audio_16k: np.ndarray, language: LanguageRequest = None,
                         prompt: str | None = None, phrases: tuple[str, ...] = (),
                         word_probabilities: bool = False, noisy: bool = False) -> Transcript:
        """`language` None: the ASR's configured default; `phrases` bias recognition;
        `word_probabilities`: the words with the recognizer's confidence (costs an alignment);
        `noisy`: the session suppresses noise, so the user is in noise (see `fast_engine`)."""

    async def transcribe_partial(self, audio_16k: np.ndarray, language: LanguageRequest = None,
                                 noisy: bool = False) -> Transcript | None:
        """A re-decode of speech still under way, on idle ASR time only: None when the ASR is
        busy, so that partials never delay a turn's decode."""

    def chat(self, request: ChatRequest) -> AsyncGenerator[LlmDelta, None]: ...

    def speak(self, text: str, voice: str, speed: float = 1.0) -> AsyncGenerator[SpeechChunk, None]: ...

    async def warm(self, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec] = (),
                   tool_choice: str = "auto") -> None:
        """Prefill the LLM's cache with `messages` as a request with `tools` renders them."""
