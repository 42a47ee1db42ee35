"""When each stage of one response happened, and the stage latencies derived from that.

The stage timings are recorded once as timestamps; every figure (TTFA included) is computed from
them, so metrics, span attributes, the log line and the client's timing event agree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from voxserve.protocol.server_events import ResponseStatus, ResponseTimingEvent


@dataclass
class ResponseTimings:
    """Monotonic timestamps of the stages of one response (seconds, `time.monotonic`)."""

    created: float = 0.0
    context_ready: float = 0.0  # transcripts awaited, prompt built
    first_token: float = 0.0
    first_tts_request: float = 0.0  # first piece of text handed to TTS
    first_tts_chunk: float = 0.0
    first_audio_sent: float = 0.0
    done: float = 0.0


@dataclass(frozen=True)
class StageTimes:
    """Stage latencies of one turn in ms, derived from the recorded timestamps (None: the stage
    did not run). Metrics, span attributes, the log line and the timing event all read these."""

    end_of_turn: float | None
    asr: float | None
    context: float | None  # end of turn decided -> the LLM's request ready (transcripts awaited)
    llm_first_token: float | None
    first_piece: float | None  # first token -> the first piece of text handed to TTS
    tts_first_chunk: float | None
    ttfa: float | None
    total: float | None

    def items(self) -> list[tuple[str, float | None]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    def event(self, response_id: str, status: ResponseStatus) -> ResponseTimingEvent:
        return ResponseTimingEvent(
            response_id=response_id, status=status, end_of_turn_ms=self.end_of_turn,
            asr_ms=self.asr, context_ms=self.context, llm_first_token_ms=self.llm_first_token,
            first_piece_ms=self.first_piece,
            tts_first_chunk_ms=self.tts_first_chunk, ttfa_ms=self.ttfa, total_ms=self.total)
