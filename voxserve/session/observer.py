"""What a session reports about itself, for metrics. Ray-free: the ingress plugs in an
implementation on Ray's metrics; tests and tools use `NullObserver`."""

from __future__ import annotations

from typing import Protocol


class SessionObserver(Protocol):
    def session_opened(self, dialect: str) -> None: ...

    def session_closed(self, dialect: str) -> None: ...

    def stage(self, stage: str, ms: float) -> None:
        """One stage's latency: end_of_turn, asr, llm_first_token, tts_first_chunk, ttfa."""

    def turn_done(self, status: str) -> None: ...

    def barge_in(self) -> None: ...

    def false_interruption(self) -> None: ...

    def speculation(self, outcome: str, seconds: float) -> None:
        """An answer started at a pause ended `outcome` (adopted, resumed, mismatched, unused)
        after `seconds` of LLM work (for a discarded one: work wasted)."""

    def error(self, code: str) -> None: ...

    def audio_seconds(self, direction: str, seconds: float) -> None: ...

    def tokens(self, kind: str, count: int) -> None: ...

    def front_end(self, chain: str, seconds: float, frames: int) -> None:
        """CPU spent by echo cancellation / noise suppression (`chain`, e.g. "aec+far_field")
        on `frames` 10 ms frames."""


class NullObserver:
    def session_opened(self, dialect: str) -> None:
        pass

    def session_closed(self, dialect: str) -> None:
        pass

    def stage(self, stage: str, ms: float) -> None:
        pass

    def turn_done(self, status: str) -> None:
        pass

    def barge_in(self) -> None:
        pass

    def false_interruption(self) -> None:
        pass

    def speculation(self, outcome: str, seconds: float) -> None:
        pass

    def error(self, code: str) -> None:
        pass

    def audio_seconds(self, direction: str, seconds: float) -> None:
        pass

    def tokens(self, kind: str, count: int) -> None:
        pass

    def front_end(self, chain: str, seconds: float, frames: int) -> None:
        pass
