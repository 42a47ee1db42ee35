"""Session metrics on Ray's metrics system, exported with Serve's own metrics on the node's
Prometheus endpoint (`server.metrics_port`). Labels are bounded: stage names, status values,
error codes and dialects, never session or response ids."""

from __future__ import annotations

import time
from collections import deque

from ray.util.metrics import Counter, Gauge, Histogram

# Milliseconds: fine below a second, where the targets are, coarse above.
_MS_BUCKETS: list[float] = [25, 50, 100, 150, 200, 300, 400, 500, 650, 800, 1000, 1200, 1500, 2000, 2500,
               3000, 4000, 5000, 7500, 10000, 20000]


class RayMetricsObserver:
    def __init__(self) -> None:
        self._sessions = Gauge("voxserve_active_sessions", "Open realtime sessions",
                               tag_keys=("dialect",))
        self._open: dict[str, int] = {}
        self._ttfa = Histogram("voxserve_ttfa_ms", "Time to first audio: end of user speech to "
                               "the first audio delta sent", boundaries=_MS_BUCKETS)
        self._stage = Histogram("voxserve_stage_latency_ms", "Latency of each pipeline stage",
                                boundaries=_MS_BUCKETS, tag_keys=("stage",))
        self._turns = Counter("voxserve_turns_total", "Responses finished, by status",
                              tag_keys=("status",))
        self.recent_barge_ins: deque[float] = deque(maxlen=256)  # decision times, for /stats
        self._barge_ins = Counter("voxserve_barge_ins_total", "Responses cut off by user speech")
        self._false = Counter("voxserve_false_interruptions_total",
                              "Interruptions that turned out to hold no words")
        # by outcome, this replica's, for /stats: how many, and the LLM seconds they took
        self.speculations: dict[str, int] = {}
        self.speculation_seconds: dict[str, float] = {}
        self._speculations = Counter("voxserve_speculations_total",
                                     "Answers started at a pause, by outcome (adopted, resumed, "
                                     "mismatched, unused)", tag_keys=("outcome",))
        self._speculation_s = Counter("voxserve_speculation_seconds_total",
                                      "Seconds of LLM work on answers started at a pause, by "
                                      "outcome (all but adopted: wasted)", tag_keys=("outcome",))
        self._errors = Counter("voxserve_errors_total", "error events sent, by code",
                               tag_keys=("code",))
        self._audio = Counter("voxserve_audio_seconds_total", "Audio seconds in and out",
                              tag_keys=("direction",))
        self._tokens = Counter("voxserve_tokens_total", "LLM tokens", tag_keys=("kind",))
        # their ratio is the cost of one 10 ms frame, per chain of front-end stages
        self._front_end_s = Counter("voxserve_front_end_seconds_total",
                                    "CPU seconds in echo cancellation and noise suppression",
                                    tag_keys=("chain",))
        self._front_end_frames = Counter("voxserve_front_end_frames_total",
                                         "10 ms input frames through echo cancellation and "
                                         "noise suppression", tag_keys=("chain",))

    def session_opened(self, dialect: str) -> None:
        self._open[dialect] = self._open.get(dialect, 0) + 1
        self._sessions.set(self._open[dialect], tags={"dialect": dialect})

    def session_closed(self, dialect: str) -> None:
        self._open[dialect] = max(0, self._open.get(dialect, 0) - 1)
        self._sessions.set(self._open[dialect], tags={"dialect": dialect})

    def stage(self, stage: str, ms: float) -> None:
        if stage == "ttfa":
            self._ttfa.observe(ms)
        self._stage.observe(ms, tags={"stage": stage})

    def turn_done(self, status: str) -> None:
        self._turns.inc(tags={"status": status})

    def barge_in(self) -> None:
        self._barge_ins.inc()
        self.recent_barge_ins.append(time.time())

    def false_interruption(self) -> None:
        self._false.inc()

    def speculation(self, outcome: str, seconds: float) -> None:
        self.speculations[outcome] = self.speculations.get(outcome, 0) + 1
        self.speculation_seconds[outcome] = self.speculation_seconds.get(outcome, 0.0) + seconds
        self._speculations.inc(tags={"outcome": outcome})
        if seconds > 0:
            self._speculation_s.inc(seconds, tags={"outcome": outcome})

    def error(self, code: str) -> None:
        self._errors.inc(tags={"code": code})

    def audio_seconds(self, direction: str, seconds: float) -> None:
        if seconds > 0:
            self._audio.inc(seconds, tags={"direction": direction})

    def tokens(self, kind: str, count: int) -> None:
        if count > 0:
            self._tokens.inc(count, tags={"kind": kind})

    def front_end(self, chain: str, seconds: float, frames: int) -> None:
        if frames > 0:
            self._front_end_s.inc(seconds, tags={"chain": chain})
            self._front_end_frames.inc(frames, tags={"chain": chain})
