"""Narrow engine interfaces shared by every model family.

Engines know nothing of Ray or WebSockets. Deployments wrap them; tests drive them on WAV files.
Audio crosses these interfaces as numpy arrays: float32 mono in [-1, 1] at the engine's native
rate (16 kHz for ASR and VAD, the TTS engine's own rate for output).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from voxserve.languages import LanguageRequest


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float
    end_s: float
    probability: float | None = None  # the recognizer's confidence in the word, if it has one


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None  # the language the engine decoded in (asked for or detected)
    audio_seconds: float
    words: tuple[Word, ...] = ()
    decode_seconds: float = 0.0


class AsrEngine(Protocol):
    name: str

    def transcribe(self, audio_16k: np.ndarray, language: LanguageRequest = None,
                   prompt: str | None = None, *, phrases: Sequence[str] = ()) -> Transcript:
        """`language`: one code, the candidates to detect among, or None (detect among all);
        the transcript's `language` is the one decoded in. `phrases` bias recognition."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Truncation:
    """What to do when the conversation does not fit the context (GA `truncation`).

    "auto" drops the oldest history (`models.context_window`); `retention_ratio` makes each cut
    deeper, down to that share of the room, so that the cached prefix survives more turns;
    `post_instructions_tokens` caps what follows the instructions. "disabled" sends everything
    and a conversation past the context fails its response."""

    mode: Literal["auto", "disabled"] = "auto"
    retention_ratio: float | None = None
    post_instructions_tokens: int | None = None


DEFAULT_TRUNCATION = Truncation()


@dataclass(frozen=True)
class ChatRequest:
    """One LLM call. `messages` are OpenAI chat-completions dicts (role/content, tool_calls...)."""

    messages: list[dict[str, Any]]
    tools: tuple[ToolSpec, ...] = ()
    # "auto" | "none" | "required" | a tool name (forced)
    tool_choice: str = "auto"
    temperature: float = 0.8
    max_tokens: int | None = None
    request_id: str = ""
    truncation: Truncation = DEFAULT_TRUNCATION


@dataclass(frozen=True)
class LlmDelta:
    """One streamed piece of an LLM answer.

    kind "text": `text` is the next piece of spoken text.
    kind "tool_call": a complete function call (`name`, `arguments` as a JSON string).
    kind "done": the last item; carries token usage and the finish reason.
    """

    kind: Literal["text", "tool_call", "done"]
    text: str = ""
    name: str = ""
    arguments: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: Literal["stop", "length", "tool_call", ""] = ""


class LlmEngine(Protocol):
    name: str

    def stream(self, request: ChatRequest) -> AsyncGenerator[LlmDelta, None]: ...

    async def warm(self, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec] = (),
                   tool_choice: str = "auto") -> None:
        """Prefill `messages` (rendered with `tools` as a request would render them) so a later
        request sharing the prefix starts fast."""


@dataclass(frozen=True)
class Phone:
    """One phoneme of synthesized speech: a symbol of the misaki (Kokoro) alphabet, which hibari
    and Kokoro both speak, with its time from the start of its chunk."""

    symbol: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class SpeechChunk:
    """A piece of synthesized speech and the words and phonemes it contains, timed from its
    own start."""

    audio: np.ndarray  # float32 mono at `sample_rate`
    sample_rate: int
    text: str
    words: tuple[Word, ...] = field(default_factory=tuple)
    phones: tuple[Phone, ...] = field(default_factory=tuple)  # empty if the engine has none


class TtsEngine(Protocol):
    name: str
    sample_rate: int
    voices: tuple[str, ...]

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> SpeechChunk:
        """All of `text` as one chunk. Silence the engine pads it with is cut by the response
        (`models.speech_trim`); an engine that joins several runs itself trims between them."""


class VadModel(Protocol):
    """Streaming voice-activity model: one call per fixed window of 16 kHz audio."""

    window_samples: int

    def reset(self) -> None: ...

    def probability(self, window_16k: np.ndarray) -> float: ...


class EndOfTurnModel(Protocol):
    """An audio end-of-turn classifier: P(the speaker has finished their turn) from the audio
    heard so far (its trailing seconds)."""

    def probability(self, audio_16k: np.ndarray) -> float: ...
