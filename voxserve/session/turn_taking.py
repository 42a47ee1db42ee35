"""Turn taking: what each heard event means for the conversation and the answer.

One `on(heard)` acts on the listener's events: speech over an answer holds it (or cancels it when
`interrupt_min_ms` is 0), speech that lasts confirms the interruption, a short burst is judged by
its words (`Interruption`), and an ended turn is committed, transcribed and answered. Words that
read complete at a pause start the answer early (`Speculation`); speech that resumes discards it.
Manual commits, Voice Live client turns and `response.create` come through the same `commit` /
`respond`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np

from voxserve.config import VadOptions
from voxserve.models.base import ChatRequest, Transcript
from voxserve.protocol.errors import ProtocolError
from voxserve.protocol.items import ContentPart, Item
from voxserve.protocol.server_events import (
    CommittedEvent, ItemAddedEvent, ItemDoneEvent, ServerEvent, SpeechStartedEvent,
    SpeechStoppedEvent, TimeoutTriggeredEvent,
)
from voxserve.session.conversation import Conversation
from voxserve.session.end_of_turn import is_backchannel
from voxserve.session.input_buffer import RATE, ms
from voxserve.session.listener import (
    Heard, IdleTimedOut, Listener, SpeechGrew, SpeechLasted, SpeechResumed, SpeechStarted,
    TurnEnded, WordsComplete,
)
from voxserve.session.observer import SessionObserver
from voxserve.session.pipeline import Pipeline
from voxserve.session.responder import Responder
from voxserve.session.response import (
    CancelReason, Response, ResponseOptions, answer_messages, chat_request,
)
from voxserve.session.speculation import Outcome, Speculation
from voxserve.session.tasks import TaskOwner
from voxserve.session.transcriber import Transcriber
from voxserve.session.turn import Turn

log = logging.getLogger("voxserve.session")
# a partial transcript this many words longer than the last prefilled one is prefilled again
PREFILL_WORDS = 4

Decoded = asyncio.Task[Transcript | Exception]


class Interruption:
    """User speech over an answer, shorter so far than `interrupt_min_ms`; the answer is held.
    `settle` reads the burst's words: none (a backchannel, a filler, noise) -> False, the answer
    may resume; content words -> True, it was a real interruption."""

    def __init__(self, response: Response, onset: int) -> None:
        self.response = response
        self.onset = onset
        self._decode: Decoded | None = None

    def heard(self, decode: Decoded) -> None:
        """The burst ended; `decode` is its transcript in the making."""
        self._decode = decode

    async def settle(self) -> tuple[bool, str]:
        decode = self._decode
        assert decode is not None, "settle() before heard()"
        await asyncio.wait({decode})  # not `await`: the decode may become the user's transcript
        result = None if decode.cancelled() else decode.result()
        text = result.text if isinstance(result, Transcript) else ""
        return not is_backchannel(text), text

    def cancel(self) -> None:
        """The session ends while the burst is judged: its decode is nobody's now."""
        if self._decode is not None:
            self._decode.cancel()


class TurnTaking:
    def __init__(self, *, session_id: str, vad: VadOptions, listener: Listener,
                 responder: Responder, transcriber: Transcriber, conversation: Conversation,
                 send: Callable[[ServerEvent], Awaitable[None]], tasks: TaskOwner,
                 observer: SessionObserver, begin_turn: Callable[[float], Turn],
                 options: Callable[[], ResponseOptions], pipeline: Pipeline,
                 system_prompt: Callable[[], str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._session_id = session_id
        self._vad = vad
        self._listener = listener
        self._responder = responder
        self._transcriber = transcriber
        self._conversation = conversation
        self._send = send
        self._tasks = tasks
        self._observer = observer
        self._begin_turn = begin_turn
        self._options = options  # the session's response options, no overrides
        self._pipeline = pipeline
        self._system_prompt = system_prompt
        self._clock = clock
        self._interruption: Interruption | None = None
        self._pending: Turn | None = None  # committed by hand, not answered yet
        self._speculation: Speculation | None = None  # the answer started at this pause
        self._prefill: asyncio.Task[None] | None = None  # the user's words so far, to the LLM
        self._prefilled: tuple[str | None, int] = (None, 0)  # (item, words) prefilled last

    @property
    def interruption(self) -> Interruption | None:
        return self._interruption

    async def on(self, heard: Heard) -> None:
        match heard:
            case SpeechStarted():
                await self._speech_started(heard)
            case SpeechGrew():
                # not for a burst over the agent: it may be dropped, never committed
                if self._interruption is None:
                    self._transcriber.partial(heard.item_id, heard.audio)
            case WordsComplete():
                await self._speculate(heard)
            case SpeechResumed():
                self._discard_speculation("resumed")
            case SpeechLasted():
                if self._interruption is not None:  # long enough: a real interruption
                    await self.cancel_response("turn_detected")
            case TurnEnded():
                await self._turn_ended(heard)
            case IdleTimedOut():
                await self._idle(heard)

    def _answers_early(self) -> ResponseOptions | None:
        """The options of the response that will follow this turn, if one is certain to (auto
        response, nothing playing, no burst being judged, no manual commit waiting) and it asks
        the LLM about the conversation itself; None: nothing may start early."""
        td = self._listener.turn_detection
        if (not self._vad.speculative_answers or td is None or not td.create_response
                or self._interruption is not None or self._responder.active is not None
                or self._pending is not None):
            return None
        options = self._options()
        if options.verbatim is not None or options.context_items is not None:
            return None
        return options

    def prefill(self, item_id: str, words: str) -> None:
        """The user's words so far (the partial transcript): the LLM prefills the conversation
        with them while the user talks, so the answer's request, which shares that prefix,
        computes only the words after it. On one CPU thread a prefill costs ~20 ms a token, so a
        turn's 15-30 new tokens took 300-600 ms after the turn ended. One at a time, and
        again only after PREFILL_WORDS more words (each one also recomputes the prompt's tail)."""
        options = self._answers_early()
        if options is None or (self._prefill is not None and not self._prefill.done()):
            return
        count = len(words.split())
        if item_id == self._prefilled[0] and count < self._prefilled[1] + PREFILL_WORDS:
            return
        self._prefilled = (item_id, count)
        self._prefill = self._tasks.start(self._run_prefill(options, words))

    async def _early_request(self, options: ResponseOptions, words: str,
                             request_id: str) -> ChatRequest:
        """The request the turn's response will make if the user's words are `words`."""
        messages = await answer_messages(options, self._conversation, self._system_prompt(),
                                         pending=words)
        return chat_request(options, messages, request_id)

    async def _run_prefill(self, options: ResponseOptions, words: str) -> None:
        request = await self._early_request(options, words, "")
        try:
            await self._pipeline.warm(request.messages, request.tools, request.tool_choice)
        except Exception as exc:  # only a head start was lost; the answer computes it all
            log.warning("prefill session=%s failed: %r", self._session_id, exc)

    async def _speculate(self, heard: WordsComplete) -> None:
        """The pause's words read complete: ask the LLM now what the response will ask if the
        turn ends here, where the words are what the user's item will hold."""
        words = self._transcriber.cleaned(heard.text)
        if not words or self._answers_early() is None:
            return
        self._discard_speculation("resumed")
        if self._prefill is not None and not self._prefill.done():
            # The prefill holds its LLM slot, and llama.cpp sends a request to an idle slot:
            # sent now, this one would land in a slot without the words just prefilled. The
            # prefill is one token; wait for it.
            await asyncio.wait({self._prefill}, timeout=1.0)
        options = self._answers_early()  # after the wait: the session may have changed
        if options is None:
            return
        request = await self._early_request(options, words, f"spec_{heard.item_id}")
        if self._speculation is not None or not self._listener.paused_on(heard.item_id):
            return  # the user went on while the context was read
        self._speculation = Speculation(self._pipeline, request, self._tasks.start,
                                        self._speculated)

    def _speculated(self, outcome: Outcome, seconds: float) -> None:
        self._observer.speculation(outcome, seconds)
        log.info("speculation session=%s outcome=%s llm_s=%.3f", self._session_id, outcome,
                 seconds)

    def _discard_speculation(self, outcome: Outcome) -> None:
        if self._speculation is not None:
            self._speculation.discard(outcome)
            self._speculation = None

    def _take_speculation(self) -> Speculation | None:
        spec, self._speculation = self._speculation, None
        return spec

    async def _speech_started(self, heard: SpeechStarted) -> None:
        self._discard_speculation("resumed")
        await self._send(SpeechStartedEvent(audio_start_ms=ms(heard.audio_start),
                                            item_id=heard.item_id))
        if heard.td.interrupt_response:
            # clients stop playing on speech_started: the playback model (the echo canceller's
            # far end, the pacing) stops there too, not when the interruption is decided
            self._responder.playback.flush()
        response = self._responder.active
        if not heard.td.interrupt_response or response is None:
            return
        if self._vad.interrupt_min_ms > 0 and response.options.audio_output:
            response.hold()  # silent at once; cancelled or resumed once the burst is judged
            self._interruption = Interruption(response, heard.onset)
        else:
            await self.cancel_response("turn_detected")

    async def _turn_ended(self, heard: TurnEnded) -> None:
        turn = heard.turn
        turn.stage_span("voxserve.end_of_turn", turn.speech_end, turn.decided,
                        **{"voxserve.silence_ms": heard.silence_ms,
                           "voxserve.turn_detection": heard.td.type})
        await self._send(SpeechStoppedEvent(audio_end_ms=ms(heard.end_sample),
                                            item_id=heard.item_id))
        speculation = self._take_speculation()
        if (interruption := self._interruption) is not None:
            # a short burst over the agent: its turn record is dropped (never exported)
            if speculation is not None:
                speculation.discard("unused")
            decode = heard.decoded or self._tasks.start(self._transcriber.decode(heard.audio))
            interruption.heard(decode)
            self._tasks.start(self._settle(interruption, heard, decode))
            return
        await self.commit(heard.item_id, heard.audio, turn, heard.decoded)
        if heard.td.create_response:
            await self.respond(self._options(), cancel_previous=True, speculation=speculation)
        elif speculation is not None:
            speculation.discard("unused")

    async def _settle(self, interruption: Interruption, heard: TurnEnded,
                      decode: Decoded) -> None:
        """With no content words the held answer resumes and the burst is dropped (its
        `speech_started` item is never committed); with words the answer is cancelled and the
        burst becomes the user's turn."""
        real, text = await interruption.settle()
        if self._interruption is not interruption:
            return  # settled meanwhile (confirmed by longer speech, or cancelled)
        if not real:
            if self._listener.speaking:
                return  # more speech is under way; its own length or words decide
            self._interruption = None
            interruption.response.resume()
            self._observer.false_interruption()
            log.info("false_interruption session=%s response=%s heard=%r", self._session_id,
                     interruption.response.id, text)
            return
        await self.cancel_response("turn_detected")
        if self._listener.speaking:
            return  # the user is still talking: that turn, when it ends, gets the answer
        turn = self._begin_turn(self._listener.heard_until())
        turn.decided = self._clock()
        await self.commit(heard.item_id, heard.audio, turn, decode)
        if heard.td.create_response:
            await self.respond(self._options(), cancel_previous=True)

    async def _idle(self, heard: IdleTimedOut) -> None:
        """GA idle timeout: an empty user turn and, if the mode says so, a response."""
        await self._send(TimeoutTriggeredEvent(audio_start_ms=ms(heard.start_sample),
                                               audio_end_ms=ms(heard.end_sample),
                                               item_id=heard.item_id))
        turn = self._begin_turn(self._clock())
        turn.decided = turn.speech_end
        # only the prefix-padding window of the silence is still held; it is committed as an
        # empty user turn, not transcribed (Whisper tends to hallucinate words into silence)
        await self.commit(heard.item_id, heard.audio, turn, silent=True)
        if heard.td.create_response:
            await self.respond(self._options(), cancel_previous=True)

    async def commit(self, item_id: str, audio: np.ndarray, turn: Turn | None = None,
                     decoded: Decoded | None = None, silent: bool = False) -> None:
        """The user's audio becomes a conversation item; its transcript follows."""
        if turn is None:  # a manual commit: the turn starts now
            turn = self._begin_turn(self._clock())
            turn.decided = turn.speech_end
        self._pending = turn
        turn.audio_seconds = audio.size / RATE
        self._observer.audio_seconds("in", audio.size / RATE)
        item = Item(id=item_id, type="message", role="user",
                    content=[ContentPart(type="input_audio", transcript=None)])
        previous = self._conversation.add(item)
        await self._send(CommittedEvent(previous_item_id=previous, item_id=item_id))
        await self._send(ItemAddedEvent(previous_item_id=previous, item=item))
        await self._send(ItemDoneEvent(previous_item_id=previous, item=item))
        await self._conversation.announce_evictions(self._send)
        if silent:
            item.content[0].transcript = ""
        else:
            self._transcriber.start(item, audio, turn, decoded)

    async def respond(self, options: ResponseOptions, cancel_previous: bool,
                      speculation: Speculation | None = None) -> Response:
        """Answer the turn committed last (or, with none, a request that starts its own turn).
        `speculation`: the answer started at the pause that ended this turn."""
        pending, self._pending = self._pending, None
        turn = pending
        if turn is None:
            turn = self._begin_turn(self._clock())
            turn.decided = turn.speech_end
        if cancel_previous:
            self._interruption = None  # the held answer, if any, is cancelled by this one
        try:
            return await self._responder.start(options, turn, cancel_previous, speculation)
        except ProtocolError:
            if self._pending is None:
                self._pending = pending  # refused: a committed turn still waits for its answer
            raise

    async def cancel_response(self, reason: CancelReason) -> None:
        """Every cancel goes through here, so an interruption being judged ends with it."""
        self._interruption = None
        self._discard_speculation("unused")
        await self._responder.cancel(reason)

    def cancel(self) -> None:
        """The session ends: the burst being judged and every task started here stop."""
        self._discard_speculation("unused")
        if self._interruption is not None:
            self._interruption.cancel()
            self._interruption = None
        self._tasks.cancel()

