"""One response: LLM text streamed into TTS, sent as the protocol's response event sequence.

A response owns its tasks and its output. Everything it emits goes through its own `Outlet`,
which is sealed when the response ends, so a cancelled response cannot write into the next one:
a late write raises instead of reaching the client. Cancelling the response's task cancels its
task group; the pipeline's streams then cancel the Serve calls behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from opentelemetry import trace

from voxserve.audio.formats import AudioFormat, b64encode
from voxserve.audio.resample import resample
from voxserve.models.base import (
    DEFAULT_TRUNCATION, ChatRequest, LlmDelta, Phone, ToolSpec, Truncation, Word,
)
from voxserve.models.speech_trim import pause_after, trimmed
from voxserve.models.tool_schema import content_text
from voxserve.protocol.ids import new_id
from voxserve.protocol.items import ContentPart, Item
from voxserve.protocol.server_events import (
    AudioDeltaEvent, AudioDoneEvent, AudioTranscriptDeltaEvent, AudioTranscriptDoneEvent,
    ContentPartAddedEvent, ContentPartDoneEvent, ErrorDetail, FunctionCallArgumentsDeltaEvent,
    FunctionCallArgumentsDoneEvent, ItemAddedEvent, ItemDoneEvent, OutputItemAddedEvent,
    OutputItemDoneEvent, ResponseCreatedEvent, ResponseDoneEvent, ResponseSnapshot,
    ResponseStatus, ServerEvent, TextDeltaEvent, TextDoneEvent, Usage,
)
from voxserve.protocol.session_config import FunctionTool, ToolChoice, ToolChoiceFunction
from voxserve.protocol.session_models import InterimResponse
from voxserve.server_tools import ServerTool, Source, ToolResult, cited
from voxserve.session.conversation import (
    CONVERSATION_ID, Conversation, SpokenAudio, call_message, result_message,
)
from voxserve.session.pipeline import Pipeline
from voxserve.session.outlet import Outlet
from voxserve.session.speculation import Speculation
from voxserve.session.speech_marks import NO_MARKS, MarkOptions, SpeechMarks
from voxserve.session.text_chunker import TextChunker, speakable
from voxserve.session.timings import ResponseTimings, StageTimes
from voxserve.session.turn import Turn
from voxserve.tracing import current, mark_cancelled, mark_failed, tracer

log = logging.getLogger("voxserve.response")

AUDIO_DELTA_MS = 100  # audio deltas of at most 100 ms (the protocol asks for 20-100 ms)
# Server-tool rounds in one response (a search, its result read, maybe another search); the
# step after the last may only speak, so a model that keeps calling still answers.
MAX_TOOL_STEPS = 3
CancelReason = Literal["turn_detected", "client_cancelled"]


class _EndMessage:
    """In the TTS queue: close the message spoken so far; later text opens a new one."""


END_MESSAGE = _EndMessage()
Piece = str | _EndMessage | None  # what the TTS worker takes: text, a message's end, the end


@dataclass
class ResponseOptions:
    instructions: str
    audio_output: bool
    voice: str  # the client's voice name, echoed
    speaker: str  # the TTS engine's speaker it maps to
    speed: float
    output_format: AudioFormat
    output_format_name: str
    tools: list[FunctionTool]
    tool_choice: ToolChoice
    temperature: float
    max_output_tokens: int | Literal["inf"]
    in_conversation: bool = True  # GA conversation:"none" keeps the output out of it
    context_items: list[Item] | None = None  # explicit input instead of the conversation
    metadata: dict[str, str] | None = None
    verbatim: str | None = None  # Voice Live pre-generated message: spoken as is, no LLM call
    gain: float = 1.0  # on the spoken audio (Voice Live voice `volume`)
    truncation: Truncation = DEFAULT_TRUNCATION  # when the conversation outgrows the context
    marks: MarkOptions = NO_MARKS  # word timestamps, visemes, blendshapes (Voice Live)
    # tools the response runs itself (voxserve/server_tools.py), by name; their specs are in
    # `tools` too, which is what the model is offered
    server_tools: Mapping[str, ServerTool] = field(default_factory=dict)
    interim: InterimResponse | None = None  # Voice Live filler speech while the answer is slow


async def _verbatim(text: str) -> AsyncGenerator[LlmDelta, None]:
    """A message given in full, streamed like an answer so that it is spoken the same way."""
    yield LlmDelta(kind="text", text=text)
    yield LlmDelta(kind="done", finish_reason="stop")


def chat_request(o: ResponseOptions, messages: list[dict[str, Any]], request_id: str,
                 tool_choice: ToolChoice | None = None) -> ChatRequest:
    """The LLM call a response with options `o` makes on `messages` (a speculation builds the
    same one, to be adopted only if equal); `tool_choice` overrides the options' (the steps
    after a server tool's result)."""
    choice = o.tool_choice if tool_choice is None else tool_choice
    choice_name = choice.name if isinstance(choice, ToolChoiceFunction) else choice
    return ChatRequest(
        messages=messages,
        tools=tuple(ToolSpec(t.name, t.description, t.parameters) for t in o.tools),
        tool_choice=choice_name if o.tools else "none", temperature=o.temperature,
        max_tokens=None if o.max_output_tokens == "inf" else o.max_output_tokens,
        request_id=request_id, truncation=o.truncation)


async def answer_messages(o: ResponseOptions, conversation: Conversation, system_prompt: str,
                          pending: str | None = None) -> list[dict[str, Any]]:
    """The messages a response with options `o` sends the LLM. A speculation or a prefill
    builds them here too, with the user's words still `pending`, so that they are the same."""
    prompt = o.instructions or system_prompt
    if o.context_items is not None:
        scratch = Conversation()
        for item in o.context_items:
            scratch.add(item)
        return await scratch.chat_messages(prompt, pending)
    return await conversation.chat_messages(prompt, pending)


def trace_event(name: str) -> None:
    """A timestamped event on the current span (the response's)."""
    trace.get_current_span().add_event(name)


class _MessageOutput:
    """The assistant message being produced: its item, text so far and audio bookkeeping."""

    def __init__(self, item: Item, output_index: int, audio: bool) -> None:
        self.item = item
        self.output_index = output_index
        self.audio = audio
        self.text = ""  # transcript (audio) or text (text-only) sent so far
        self.spoken = SpokenAudio()
        self.marks: SpeechMarks | None = None  # what rides on the audio, if asked for
        self.first_audio = 0.0  # monotonic time its first audio went out
        self.cites = True  # names the server tools' sources when done (a preamble does not)


class Response:
    def __init__(self, options: ResponseOptions, conversation: Conversation, pipeline: Pipeline,
                 send: Callable[[ServerEvent], Awaitable[None]], system_prompt: str,
                 on_audio: Callable[[], None] | None = None, turn: Turn | None = None,
                 pace: Callable[[np.ndarray, int], Awaitable[None]] | None = None,
                 speculation: Speculation | None = None) -> None:
        self.id = new_id("resp")
        self.turn = turn or Turn(speech_end=time.monotonic())
        self.status: ResponseStatus = "in_progress"
        self.audio_seconds_out = 0.0
        self.spoken_item_id: str | None = None  # the assistant message whose audio was sent
        self.spoken_started = 0.0  # when that message's first audio went out (its playback)
        self.options = options
        self.timings = ResponseTimings(created=time.monotonic())
        self._conversation = conversation
        self._pipeline = pipeline
        self._emit = Outlet(send)
        self._system_prompt = system_prompt
        self._on_audio = on_audio
        self._pace = pace  # waits while the client's playback is too far behind (playback.py)
        self._speculation = speculation  # an answer started at the pause, adopted if it fits
        self._cancel_reason: CancelReason | None = None
        self._output: list[Item] = []
        self._message: _MessageOutput | None = None
        self.usage = Usage()
        self._finish: str = ""
        self._sources: list[Source] | None = None  # what server tools found, once one ran
        self._asked = ""  # the user's words this answers (not evidence of a source)
        self._filled = False  # a filler (interim response, preamble) was queued: one at most
        self._opening = asyncio.Lock()
        self._heard_until = 0.0  # when the client finishes playing the messages closed so far
        self.done = asyncio.Event()

    # ---- control ------------------------------------------------------------------------

    def mark_cancelled(self, reason: CancelReason) -> None:
        """Record why the task is about to be cancelled (read when the close-out is sent)."""
        self._cancel_reason = self._cancel_reason or reason

    def hold(self) -> None:
        """Pause the output (a possible interruption is being judged): no audio goes out."""
        self._emit.hold()

    def resume(self) -> None:
        """The interruption was false: carry on from where the output paused."""
        self._emit.release()

    def snapshot(self, status: ResponseStatus = "in_progress",
                 details: dict[str, Any] | None = None,
                 usage: Usage | None = None) -> ResponseSnapshot:
        o = self.options
        return ResponseSnapshot(
            id=self.id, status=status, status_details=details,
            output=[i.model_copy(deep=True) for i in self._output], usage=usage,
            audio_output=o.audio_output, voice=o.voice, output_format=o.output_format_name,
            max_output_tokens=o.max_output_tokens,
            conversation_id=CONVERSATION_ID if o.in_conversation else None, metadata=o.metadata)

    # ---- the task body --------------------------------------------------------------------

    async def run(self) -> None:
        span = tracer().start_span("voxserve.response", attributes={
            "voxserve.response_id": self.id, "voxserve.audio_output": self.options.audio_output})
        try:
            with current(span):
                await self._run(span)
        finally:
            self._drop_speculation()
            span.end()

    def _drop_speculation(self) -> None:
        """Cancelled or failed before the LLM call: the speculation is nobody's now."""
        if self._speculation is not None:
            self._speculation.discard("unused")
            self._speculation = None

    async def _run(self, span: Any) -> None:
        status: ResponseStatus = "completed"
        details: dict[str, Any] | None = None
        try:
            await self._emit(ResponseCreatedEvent(response=self.snapshot()))
            await self._generate()
            if self._finish == "length":
                status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        except asyncio.CancelledError:
            status = "cancelled"
            details = {"type": "cancelled", "reason": self._cancel_reason or "client_cancelled"}
            mark_cancelled(span, details["reason"])
            cancel_span = tracer().start_span("voxserve.cancel", attributes={
                "voxserve.cancel_reason": details["reason"]})
            try:
                await self._finish_response(status, details)
            finally:
                cancel_span.end()
            raise
        except Exception as exc:  # a model or deployment failure ends this response only
            log.exception("response %s failed", self.id)
            while isinstance(exc, ExceptionGroup) and exc.exceptions:  # the first real cause
                exc = exc.exceptions[0]
            status = "failed"
            mark_failed(span, exc)
            details = {"type": "failed", "error": ErrorDetail(
                type="server_error", code="server_error",
                message=f"response generation failed: {type(exc).__name__}: {exc}").model_dump()}
        await self._finish_response(status, details)

    async def finish_unstarted(self) -> None:
        """Close out a response whose task was cancelled before it ever ran."""
        self._drop_speculation()
        self._emit.close_out()
        await self._emit(ResponseCreatedEvent(response=self.snapshot()))
        await self._finish_response("cancelled", {
            "type": "cancelled", "reason": self._cancel_reason or "client_cancelled"})

    async def _finish_response(self, status: ResponseStatus, details: dict[str, Any] | None) -> None:
        self.status = status
        if status == "cancelled":
            self._emit.close_out()
        try:
            await self._close_message(status)
            self.timings.done = time.monotonic()
            await self._emit(ResponseDoneEvent(response=self.snapshot(status, details, self.usage)))
        finally:
            self._emit.seal()
            self._end_turn_span()
            self.done.set()

    def stage_times(self) -> StageTimes:
        t, turn = self.timings, self.turn

        def between(a: float, b: float) -> float | None:
            return round((b - a) * 1000, 1) if a and b else None
        return StageTimes(
            end_of_turn=between(turn.speech_end, turn.decided),
            asr=between(turn.asr_start, turn.asr_done),
            context=between(turn.decided, t.context_ready),
            llm_first_token=between(t.context_ready, t.first_token),
            first_piece=between(t.first_token, t.first_tts_request),
            tts_first_chunk=between(t.first_tts_request, t.first_tts_chunk),
            ttfa=between(turn.speech_end, t.first_audio_sent),
            total=between(turn.speech_end, t.done))

    def _end_turn_span(self) -> None:
        span = self.turn.span
        if span is None:
            return
        attrs: dict[str, Any] = {
            "voxserve.response_id": self.id, "voxserve.status": self.status,
            "voxserve.input_tokens": self.usage.input_text_tokens,
            "voxserve.cached_tokens": self.usage.cached_tokens,
            "voxserve.output_tokens": self.usage.output_text_tokens,
            "voxserve.audio_in_seconds": round(self.turn.audio_seconds, 3),
            "voxserve.audio_out_seconds": round(self.audio_seconds_out, 3),
        }
        for stage, value in self.stage_times().items():
            if value is not None:
                attrs[f"voxserve.{stage}_ms"] = value
        span.set_attributes(attrs)
        if self.status == "cancelled":
            mark_cancelled(span, self._cancel_reason or "client_cancelled")
        span.end()

    def _answer(self, request: ChatRequest) -> AsyncGenerator[LlmDelta, None]:
        """The LLM's stream for `request`: the speculation's when it asked for the same."""
        spec, self._speculation = self._speculation, None
        if self.options.verbatim is not None:
            if spec is not None:
                spec.discard("mismatched")
            return _verbatim(self.options.verbatim)
        if spec is not None:
            if spec.matches(request):
                return spec.adopt()
            spec.discard("mismatched")
        return self._pipeline.chat(request)

    async def _generate(self) -> None:
        messages = await answer_messages(self.options, self._conversation, self._system_prompt)
        self.timings.context_ready = time.monotonic()
        # what the user asked: a citation needs words of the source beyond these
        self._asked = next((content_text(m.get("content")) for m in reversed(messages)
                            if m.get("role") == "user"), "")
        stream = self._answer(chat_request(self.options, messages, self.id))
        sentences: asyncio.Queue[Piece] = asyncio.Queue()
        chunker = TextChunker()
        async with asyncio.TaskGroup() as tg:
            tts_task = tg.create_task(self._speak(sentences)) if self.options.audio_output else None
            interim = self.options.interim if tts_task is not None else None
            slow = (tg.create_task(self._when_slow(interim, sentences))
                    if interim is not None and "latency" in interim.triggers else None)
            try:
                for step in range(1, MAX_TOOL_STEPS + 1):
                    calls = await self._stream(stream, chunker, sentences)
                    if calls and step == 1 and tts_task is not None:
                        self._before_tools(calls, sentences)
                    served = [c for c in calls if c.name in self.options.server_tools]
                    if not served or self._finish == "length":
                        break
                    for call in served:
                        messages = [*messages, *await self._run_server_tool(call)]
                    if len(served) < len(calls):  # a client's call ends the response: the
                        break                     # client runs it and asks again
                    choice = self._next_choice(step)
                    stream = self._pipeline.chat(chat_request(
                        self.options, messages, f"{self.id}.{step}", tool_choice=choice))
                else:
                    await self._stream(stream, chunker, sentences)
            finally:
                if slow is not None:
                    slow.cancel()
                if tts_task is not None:
                    for piece in chunker.flush():
                        sentences.put_nowait(piece)
                    sentences.put_nowait(None)

    def _filler(self, text: str, sentences: asyncio.Queue[Piece]) -> None:
        """`text` spoken as a message of its own, before whatever the response says next; only
        while nothing was said yet (a filler after the answer began would interrupt it)."""
        if self._message is not None or self.spoken_item_id is not None or self._filled:
            return
        self._filled = True
        sentences.put_nowait(text)
        sentences.put_nowait(END_MESSAGE)

    def _before_tools(self, calls: list[Item], sentences: asyncio.Queue[Piece]) -> None:
        """The model called tools: the session's `tool` interim response, else a server
        tool's own preamble ("Let me check."). On the CPU default a retrieval turn's answer
        starts seconds later than a plain one (docs/perf/knowledge.md), and a client's tool
        takes what it takes: silence reads as a dropped call."""
        interim = self.options.interim
        if interim is not None and "tool" in interim.triggers:
            self._filler(random.choice(interim.texts), sentences)
            return
        served = [self.options.server_tools[c.name or ""] for c in calls
                  if c.name in self.options.server_tools]
        if text := next((t.preamble for t in served if t.preamble), None):
            self._filler(text, sentences)

    async def _when_slow(self, interim: InterimResponse, sentences: asyncio.Queue[Piece]) -> None:
        """Voice Live's `latency` trigger: no audio within the threshold, a filler."""
        await asyncio.sleep(interim.latency_threshold_ms / 1000)
        if not self.timings.first_audio_sent:
            self._filler(random.choice(interim.texts), sentences)

    async def _stream(self, stream: AsyncGenerator[LlmDelta, None], chunker: TextChunker,
                      sentences: asyncio.Queue[Piece]) -> list[Item]:
        """One LLM step into the output; the function calls it made."""
        calls: list[Item] = []
        async with contextlib.aclosing(stream) as deltas:
            async for delta in deltas:
                if (call := await self._on_delta(delta, chunker, sentences)) is not None:
                    calls.append(call)
        return calls

    async def _on_delta(self, delta: LlmDelta, chunker: TextChunker,
                        sentences: asyncio.Queue[Piece]) -> Item | None:
        if not self.timings.first_token:
            self.timings.first_token = time.monotonic()
            trace_event("first_token")
        if delta.kind == "text":
            if not delta.text:
                return None
            message = await self._open_message()
            if message.audio:
                for piece in chunker.push(delta.text):
                    sentences.put_nowait(piece)
            else:
                message.text += delta.text
                await self._emit(TextDeltaEvent(**self._part_ref(message), delta=delta.text))
        elif delta.kind == "tool_call":
            return await self._function_call(delta)
        else:  # a step's end: usage adds up over the steps of a server tool's round trips
            u = self.usage
            self.usage = Usage(input_text_tokens=u.input_text_tokens + delta.prompt_tokens,
                               cached_tokens=u.cached_tokens + delta.cached_tokens,
                               output_text_tokens=u.output_text_tokens + delta.completion_tokens)
            self._finish = delta.finish_reason
        return None

    # ---- the spoken message ----------------------------------------------------------------

    def _part_ref(self, m: _MessageOutput) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": m.item.id, "output_index": m.output_index,
                "content_index": 0}

    async def _add_output_item(self, item: Item) -> int:
        index = len(self._output)
        self._output.append(item)
        await self._emit(OutputItemAddedEvent(response_id=self.id, output_index=index, item=item))
        if self.options.in_conversation:  # out-of-band output is no conversation item
            previous = self._conversation.last_id
            self._conversation.add(item)
            await self._emit(ItemAddedEvent(previous_item_id=previous, item=item))
            await self._conversation.announce_evictions(self._emit)
        return index

    async def _open_message(self) -> _MessageOutput:
        # Both the LLM loop (first text) and the TTS worker (a filler) may open the message,
        # and opening awaits the client's events: one at a time, or each would add its own.
        async with self._opening:
            return self._message or await self._new_message()

    async def _new_message(self) -> _MessageOutput:
        audio = self.options.audio_output
        item = Item(id=new_id("item"), type="message", role="assistant", status="in_progress")
        index = await self._add_output_item(item.model_copy(deep=True))
        # the copy in the output list / conversation gets the part once it is announced
        stored = self._output[index]
        self._message = _MessageOutput(stored, index, audio)
        if audio and self.options.marks:
            self._message.marks = SpeechMarks(self.options.marks, self._part_ref(self._message))
        part = ContentPart(type="audio", transcript="") if audio else ContentPart(type="text", text="")
        stored.content.append(part)
        part_wire = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        await self._emit(ContentPartAddedEvent(**self._part_ref(self._message), part=part_wire))
        return self._message

    async def _speak(self, sentences: asyncio.Queue[Piece]) -> None:
        """TTS worker: one piece of text at a time, transcript delta before its audio."""
        o = self.options
        previous = ""  # the piece spoken before: its last mark sets the pause before the next
        while (text := await sentences.get()) is not None:
            if isinstance(text, _EndMessage):  # a filler's end
                if self._message is not None:
                    self._message.cites = False
                await self._close_message("completed")
                continue
            clean = speakable(text).strip()
            if not clean:
                continue
            message = await self._open_message()
            delta_text = (" " if message.text else "") + text
            message.text += delta_text
            message.item.content[0].transcript = message.text
            await self._emit(AudioTranscriptDeltaEvent(**self._part_ref(message), delta=delta_text))
            if not self.timings.first_tts_request:
                self.timings.first_tts_request = time.monotonic()
            async with contextlib.aclosing(self._pipeline.speak(clean, o.speaker, o.speed)) as stream:
                async for chunk in stream:
                    if not self.timings.first_tts_chunk:
                        self.timings.first_tts_chunk = time.monotonic()
                    # The first piece starts with its first sound; later ones after a pause
                    # like a speaker's at that mark, not the engine's own padding.
                    spoken = trimmed(chunk, pause_after(previous) if previous else 0.0)
                    previous = ""
                    await self._send_audio(message, spoken.audio, spoken.sample_rate,
                                           spoken.words, spoken.phones)
            previous = clean

    async def _send_audio(self, message: _MessageOutput, audio: np.ndarray, rate: int,
                          words: tuple[Word, ...], phones: tuple[Phone, ...]) -> None:
        fmt = self.options.output_format
        out = resample(audio, rate, fmt.rate)
        if self.options.gain != 1.0:
            out = np.clip(out * self.options.gain, -1.0, 1.0)
        offset_s = message.spoken.duration_ms / 1000.0
        message.spoken.words.extend(Word(w.text, w.start_s + offset_s, w.end_s + offset_s)
                                    for w in words)
        if message.marks is not None:
            message.marks.add(offset_s, words, phones)
        step = fmt.rate * AUDIO_DELTA_MS // 1000
        for start in range(0, out.size, step):
            piece = out[start:start + step]
            if self._pace is not None:
                await self._pace(piece, fmt.rate)
            if message.marks is not None:  # each mark goes out no later than its audio
                for mark in message.marks.due(offset_s + (start + piece.size) / fmt.rate):
                    await self._emit(mark)
            await self._emit(AudioDeltaEvent(**self._part_ref(message),
                                              delta=b64encode(fmt.encode(piece))))
            message.spoken.duration_ms += 1000.0 * piece.size / fmt.rate
            # the client plays a message after the one before it (a filler) has been heard
            message.first_audio = message.first_audio or max(time.monotonic(), self._heard_until)
            self.audio_seconds_out += piece.size / fmt.rate
            if not self.timings.first_audio_sent:
                self.timings.first_audio_sent = time.monotonic()
                trace_event("first_audio_sent")
                if self._on_audio is not None:
                    self._on_audio()

    async def _close_message(self, status: str) -> None:
        m = self._message
        if m is None:
            return
        self._message = None
        ref = self._part_ref(m)
        if m.audio:
            await self._emit(AudioDoneEvent(**ref))
            await self._emit(AudioTranscriptDoneEvent(**ref, transcript=m.text,
                                                      sources=self._cited(m)))
            for done in m.marks.done() if m.marks is not None else ():
                await self._emit(done)
            part = {"type": "audio", "transcript": m.text}
            self._conversation.spoken[m.item.id] = m.spoken
            self.spoken_item_id = m.item.id
            self.spoken_started = m.first_audio  # 0: none of it was sent
            if m.first_audio:
                self._heard_until = m.first_audio + m.spoken.duration_ms / 1000
            if not m.cites:  # a filler is for the caller, not context for the model
                self._conversation.fillers.add(m.item.id)
        else:
            await self._emit(TextDoneEvent(**ref, text=m.text, sources=self._cited(m)))
            part = {"type": "text", "text": m.text}
            m.item.content[0].text = m.text
        await self._emit(ContentPartDoneEvent(**ref, part=part))
        m.item.status = "completed" if status == "completed" else "incomplete"
        await self._emit(OutputItemDoneEvent(response_id=self.id, output_index=m.output_index,
                                             item=m.item))
        if self.options.in_conversation:
            await self._emit(ItemDoneEvent(previous_item_id=None, item=m.item))

    # ---- function calls --------------------------------------------------------------------

    async def _function_call(self, delta: LlmDelta) -> Item:
        # Today's engines answer with text or with one call, never both, so no spoken message is
        # open here; an engine that speaks a preamble first must close it before this item.
        item = Item(id=new_id("item"), type="function_call", status="in_progress",
                    call_id=new_id("call"), name=delta.name, arguments="")
        index = await self._add_output_item(item)
        stored = self._output[index]
        ref: dict[str, Any] = {"response_id": self.id, "item_id": item.id, "output_index": index,
                               "call_id": item.call_id}
        await self._emit(FunctionCallArgumentsDeltaEvent(**ref, delta=delta.arguments))
        stored.arguments = delta.arguments
        stored.status = "completed"
        await self._emit(FunctionCallArgumentsDoneEvent(**ref, name=delta.name,
                                                        arguments=delta.arguments))
        await self._emit(OutputItemDoneEvent(response_id=self.id, output_index=index, item=stored))
        if self.options.in_conversation:
            await self._emit(ItemDoneEvent(previous_item_id=None, item=stored))
        return stored

    async def _run_server_tool(self, call: Item) -> list[dict[str, Any]]:
        """Run a server tool on `call`, add its output item, and return the two chat messages
        (the call and its result) the next step reads."""
        tool = self.options.server_tools[call.name or ""]
        span = tracer().start_span("voxserve.tool", attributes={"voxserve.tool": call.name or ""})
        try:
            with current(span):
                result = await tool.call(call.arguments or "{}")
        except Exception as exc:  # a failed tool is a result the answer can speak about
            log.exception("response %s: server tool %s failed", self.id, call.name)
            mark_failed(span, exc)
            result = ToolResult(json.dumps({"error": f"{call.name} failed: {type(exc).__name__}"}))
        finally:
            span.end()
        self._sources = [*(self._sources or ()), *result.sources]
        output = Item(id=new_id("item"), type="function_call_output", call_id=call.call_id,
                      output=result.output)
        if self.options.in_conversation:
            previous = self._conversation.last_id
            self._conversation.add(output)
            await self._emit(ItemAddedEvent(previous_item_id=previous, item=output))
            await self._emit(ItemDoneEvent(previous_item_id=previous, item=output))
            await self._conversation.announce_evictions(self._emit)
        return [call_message(call), result_message(output)]

    def _next_choice(self, step: int) -> ToolChoice:
        """The tool choice of the step after server-tool step `step`. The client's choice was
        for the first step ("required" is met by now). With only server tools in the response the
        next step speaks: its prompt has no tool descriptions and it takes no speak-or-call
        decision, fewer tokens to prefill before the first word (the cost of a retrieval turn,
        docs/perf/knowledge.md), and a small model cannot answer the result with another search.
        With client tools in the response it may still call one."""
        client_tools = any(t.name not in self.options.server_tools for t in self.options.tools)
        return "auto" if client_tools and step < MAX_TOOL_STEPS else "none"

    def _cited(self, m: _MessageOutput) -> list[dict[str, Any]] | None:
        """The transcript's `sources`: None when no server tool ran, or for its preamble (the
        field stays off)."""
        if self._sources is None or not m.cites:
            return None
        return [s.render() for s in cited(self._sources, m.text, self._asked)]
