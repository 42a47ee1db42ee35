"""The transcriber: user audio to the item's transcript, its wire events and the LLM's context.

What a decode asks of the ASR comes from the session's transcription settings (`recognition`):
the language (one, or candidates to detect among: Voice Live "en,es", GA `languages`, Voice
Live `turn_detection.languages`), the prompt, and the phrases to favour (Voice Live
`phrase_list`, GA `keywords`). The protocol has already refused unknown languages. A committed item's transcript is a future in the
conversation, so a response can start while the decode is still running; it resolves to "" when
the decode fails, and the client gets `...transcription.failed`. The transcriber owns every task it
starts: `cancel()` stops them, and the pipeline cancels the Serve calls behind them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from voxserve.languages import LanguageRequest, request
from voxserve.models.base import Transcript
from voxserve.protocol.items import Item
from voxserve.protocol.server_events import (
    ErrorDetail, ErrorEvent, ServerEvent, TranscriptionCompletedEvent, TranscriptionDeltaEvent,
    TranscriptionFailedEvent,
)
from voxserve.protocol.session_config import SessionConfig
from voxserve.session.conversation import Conversation
from voxserve.session.end_of_turn import remove_fillers
from voxserve.session.partial_transcript import PartialTranscript
from voxserve.session.pipeline import Pipeline
from voxserve.session.tasks import TaskOwner
from voxserve.session.turn import Turn

log = logging.getLogger("voxserve.transcriber")


def recognition(cfg: SessionConfig) -> tuple[LanguageRequest, str | None, tuple[str, ...]]:
    """(language, prompt, phrases) for the ASR. A language None leaves the choice to the
    operator's `asr.language`. `language` wins over a GA `languages` list, and both over Voice
    Live's `turn_detection.languages`."""
    tx, td = cfg.transcription, cfg.turn_detection
    language: LanguageRequest = None
    if tx is not None:
        language = request(tx.language) or request(tx.languages)
    if language is None and td is not None:
        language = request(td.languages)
    if tx is None:
        return language, None, ()
    phrases = tuple(dict.fromkeys([*(tx.phrase_list or ()), *(tx.keywords or ())]))
    return language, tx.prompt or None, phrases


def _logprobs(result: Transcript) -> list[dict[str, Any]]:
    """GA/beta `logprobs` of a transcript: Whisper's per-word probabilities, one entry a word
    (its tokens' probabilities multiplied, as faster-whisper reports them)."""
    return [{"token": w.text, "logprob": math.log(max(w.probability, 1e-12)),
             "bytes": list(w.text.encode())}
            for w in result.words if w.probability is not None]


class Transcriber:
    def __init__(self, pipeline: Pipeline, conversation: Conversation,
                 send: Callable[[ServerEvent], Awaitable[None]], tasks: TaskOwner,
                 config: Callable[[], SessionConfig], session_id: str = "",
                 clock: Callable[[], float] = time.monotonic,
                 partials_for: Callable[[LanguageRequest, str | None, tuple[str, ...], bool, bool],
                                        bool]
                 = lambda *recognised: False,
                 on_words: Callable[[str, str], None] = lambda item_id, words: None) -> None:
        self._session_id = session_id  # carried by its log lines
        self._pipeline = pipeline
        self._conversation = conversation
        self._send = send
        self._tasks = tasks
        self._config = config
        self._clock = clock
        # the partial transcript of the speech under way (one item at a time) and its decode
        self._partial_item: str | None = None
        self._partial = PartialTranscript()
        self._partial_task: asyncio.Task[None] | None = None
        self.partial_decodes = 0  # started; a decode still running when the next is due is skipped
        self._partials_for = partials_for  # does a turn asking for this get partials
        self._on_words = on_words  # (item id, the words sent so far) after each partial delta
        self._partial_words = ""  # the deltas sent for the speech under way, joined

    async def decode(self, audio: np.ndarray) -> Transcript | Exception:
        """One decode with the session's language, prompt and phrases. A failure is returned,
        not raised: it runs as a background task, where an escaping exception would end the
        session."""
        if self._partial_task is not None and not self._partial_task.done():
            # this decode supersedes the partial one, which would hold the fast engine's slot
            # (the ASR replica lets its thread finish on another core); the partial transcript
            # itself is kept, for the final to complete
            self._partial_task.cancel()
        try:
            cfg = self._config()
            return await self._pipeline.transcribe(
                audio, *recognition(cfg), word_probabilities=cfg.transcription_logprobs,
                noisy=cfg.noise_reduction is not None)
        except Exception as exc:
            return exc

    def start(self, item: Item, audio: np.ndarray, turn: Turn | None = None,
              decoded: asyncio.Task[Transcript | Exception] | None = None) -> None:
        """Transcribe a committed user item (or take over the decode already running for it)."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._conversation.transcripts[item.id] = future
        if turn is None:
            self._tasks.start(self._run(item, audio, future, decoded, None))
            return
        with turn.current():
            self._tasks.start(self._run(item, audio, future, decoded, turn))

    def cancel(self) -> None:
        self._tasks.cancel()

    # ---- partial transcripts while the user talks -------------------------------------------

    def partial(self, item_id: str, audio: np.ndarray) -> None:
        """Re-decode the speech under way and send what the decodes agree on as a delta. At most
        one partial decode runs per session: one still running when the next is due means the
        ASR is busy, and the newer audio waits for the next interval."""
        cfg = self._config()
        if cfg.transcription is None or not self._partials_for(
                *recognition(cfg), cfg.transcription_logprobs, cfg.noise_reduction is not None):
            return  # nobody asked for transcripts, or the ASR is too slow to re-decode for them
        if item_id != self._partial_item:
            self.drop_partial()
            self._partial_item, self._partial = item_id, PartialTranscript()
            self._partial_words = ""
        if self._partial_task is not None and not self._partial_task.done():
            return
        self.partial_decodes += 1
        self._partial_task = self._tasks.start(self._partial_decode(item_id, audio, self._partial))

    async def _partial_decode(self, item_id: str, audio: np.ndarray,
                              partial: PartialTranscript) -> None:
        cfg = self._config()
        try:
            result = await self._pipeline.transcribe_partial(
                audio, recognition(cfg)[0], noisy=cfg.noise_reduction is not None)
        except Exception:  # a failed partial is not reported: the final reports its own failure
            return
        if result is None or partial is not self._partial:
            return  # the ASR was busy (this one is skipped), or the speech moved on
        delta = partial.update(self.cleaned(result.text))
        if delta:
            await self._send(TranscriptionDeltaEvent(item_id=item_id, content_index=0, delta=delta))
            self._partial_words += delta
            self._on_words(item_id, self._partial_words)

    def _take_partial(self, item_id: str) -> PartialTranscript | None:
        """The final decode of `item_id` is here: its partial transcript, if one was sent."""
        if item_id != self._partial_item:
            return None
        partial = self._partial
        self.drop_partial()
        return partial if partial.sent_words else None

    def drop_partial(self) -> None:
        """No partial decode runs on, nor its transcript (the speech was cleared, or is a burst
        over the agent that may never be committed)."""
        if self._partial_task is not None:
            self._partial_task.cancel()
        self._partial_task = None
        self._partial_item = None
        self._partial = PartialTranscript()
        self._partial_words = ""

    def cleaned(self, text: str) -> str:
        """A decode's words as the user's item will read."""
        text = text.strip()
        td = self._config().turn_detection
        return remove_fillers(text) if td is not None and td.remove_filler_words else text

    async def _run(self, item: Item, audio: np.ndarray, future: asyncio.Future[str],
                   decoded: asyncio.Task[Transcript | Exception] | None,
                   turn: Turn | None) -> None:
        try:
            if turn is not None and decoded is None:
                turn.asr_start = self._clock()
            # awaiting the early decode's task directly: cancelling this one cancels it too
            result = await (decoded if decoded is not None else self.decode(audio))
            if turn is not None:
                turn.asr_done = self._clock()
                turn.stage_span("voxserve.asr", turn.asr_start, turn.asr_done,
                                **{"voxserve.early": decoded is not None})
        except asyncio.CancelledError:
            future.cancel()
            raise
        partial = self._take_partial(item.id)
        if isinstance(result, Exception):
            await self._failed(item, future, result)
            return
        text = self.cleaned(result.text)
        cfg = self._config()
        item.content[0].transcript = text
        if not future.done():
            future.set_result(text)
        if cfg.transcription is not None:
            logprobs = _logprobs(result) if cfg.transcription_logprobs else None
            # after partials, only what completes them (nothing when the final revised one)
            delta = text if partial is None else partial.remainder(text)
            if delta:
                await self._send(TranscriptionDeltaEvent(item_id=item.id, content_index=0,
                                                         delta=delta, logprobs=logprobs))
            await self._send(TranscriptionCompletedEvent(item_id=item.id, content_index=0,
                                                         transcript=text,
                                                         audio_seconds=result.audio_seconds,
                                                         logprobs=logprobs))

    async def _failed(self, item: Item, future: asyncio.Future[str], exc: Exception) -> None:
        log.warning("session %s: transcription of %s failed: %s", self._session_id, item.id, exc)
        if not future.done():
            future.set_result("")
        detail = ErrorDetail(type="server_error", code="asr_failed",
                             message=f"transcription failed: {exc}")
        if self._config().transcription is not None:
            await self._send(TranscriptionFailedEvent(item_id=item.id, content_index=0,
                                                      error=detail))
        else:
            await self._send(ErrorEvent(error=detail))
