"""Server-side sampling settings that take precedence over what a request asks for.

Both LLM engines apply them the same way, so the options file (`llm.seed`, `llm.temperature`)
means one thing whichever engine serves it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import ChatRequest


@dataclass(frozen=True)
class SamplingOverrides:
    """seed: fixes what sampling draws (None: the engine picks one per request).
    temperature: when set, replaces every request's own (reproducible agents and tests)."""

    seed: int | None = None
    temperature: float | None = None

    def temperature_for(self, request: ChatRequest) -> float:
        return request.temperature if self.temperature is None else self.temperature


__all__ = ["SamplingOverrides"]
