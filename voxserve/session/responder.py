"""The responder: the session's one active-response slot, its reports and its cancellation.

`start` builds a `Response` for a turn and runs it as an owned task; `cancel` marks the reason,
cancels the task (the response's own task group and the pipeline then cancel every Serve call
behind it) and waits for its close-out with a ceiling. A finished response is reported once:
metrics, one log line and, when the session asked for it, the typed timing event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from voxserve.protocol.errors import ErrorCode, ProtocolError
from voxserve.models.base import Truncation
from voxserve.protocol.items import Item, ItemReference
from voxserve.protocol.response_overrides import ResponseOverrides
from voxserve.protocol.server_events import ItemTruncatedEvent, ServerEvent
from voxserve.protocol.session_config import SessionConfig, VoiceTable, flat_format_name
from voxserve.protocol.session_models import TruncationConfig
from voxserve.server_tools import ServerTool
from voxserve.session.conversation import Conversation
from voxserve.session.observer import SessionObserver
from voxserve.session.pipeline import Pipeline
from voxserve.session.playback import Playback
from voxserve.session.response import CancelReason, Response, ResponseOptions
from voxserve.session.speculation import Speculation
from voxserve.session.speech_marks import MarkOptions
from voxserve.session.tasks import TaskOwner
from voxserve.session.turn import Turn

log = logging.getLogger("voxserve.session")

CANCEL_WAIT_S = 10.0  # a response that does not stop within this is logged and let go


def response_options(cfg: SessionConfig, o: ResponseOverrides | None, voices: VoiceTable,
                     system_prompt: str, conversation: Conversation,
                     server_tools: Sequence[ServerTool] = ()) -> ResponseOptions:
    """The session's settings with one `response.create`'s overrides (already validated).

    `server_tools` are offered beside the client's tools unless the session turned them off
    (`session.voxserve.knowledge`), the answer may call no tool, or a client tool has the name."""
    o = o or ResponseOverrides()
    voice = o.voice if o.voice is not None else cfg.voice
    instructions = o.instructions if o.instructions is not None else system_prompt
    if o.additional_instructions:  # Voice Live: appended to whatever instructions apply
        instructions = f"{instructions}\n{o.additional_instructions}"
    output_format = o.output_format if o.output_format is not None else cfg.output_format
    context = None
    if o.input is not None:
        context = [conversation.get(x.id, "response.input.id") if isinstance(x, ItemReference)
                   else x for x in o.input]
    tools = o.tools if o.tools is not None else cfg.tools
    tool_choice = o.tool_choice if o.tool_choice is not None else cfg.tool_choice
    names = {t.name for t in tools}
    served = {t.spec.name: t for t in server_tools if t.spec.name not in names
              and (cfg.knowledge if cfg.knowledge is not None else t.on_by_default)} \
        if tool_choice != "none" else {}
    return ResponseOptions(
        instructions=instructions,
        audio_output=o.audio_output if o.audio_output is not None else cfg.audio_output,
        voice=voice, speaker=voices.resolve(voice, "response.voice"),
        speed=o.speed if o.speed is not None else cfg.speed,
        gain=o.volume if o.volume is not None else cfg.volume,
        output_format=output_format,
        output_format_name=flat_format_name(output_format, output=True),
        tools=[*tools, *(t.spec for t in served.values())], tool_choice=tool_choice,
        server_tools=served,
        temperature=o.temperature if o.temperature is not None else cfg.temperature,
        max_output_tokens=(o.max_output_tokens if o.max_output_tokens is not None
                           else cfg.max_output_tokens),
        in_conversation=o.in_conversation, context_items=context, metadata=o.metadata,
        verbatim=o.verbatim, truncation=_truncation(cfg.truncation), marks=_marks(cfg),
        interim=o.interim if o.interim is not None else cfg.interim_response)


def _marks(cfg: SessionConfig) -> MarkOptions:
    outputs = cfg.animation.outputs if cfg.animation else ()
    return MarkOptions(words=cfg.word_timestamps, visemes="viseme_id" in outputs,
                       blendshapes="blendshapes" in outputs)


def _truncation(t: TruncationConfig) -> Truncation:
    """The session's truncation setting as the LLM engines take it."""
    return Truncation(mode="disabled" if t.type == "disabled" else "auto",
                      retention_ratio=t.retention_ratio,
                      post_instructions_tokens=t.post_instructions_tokens)


class Responder:
    def __init__(self, *, session_id: str, conversation: Conversation, pipeline: Pipeline,
                 send: Callable[[ServerEvent], Awaitable[None]], tasks: TaskOwner,
                 observer: SessionObserver, config: Callable[[], SessionConfig],
                 system_prompt: Callable[[], str], on_started: Callable[[], None],
                 on_quiet: Callable[[], None], playback: Playback,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._session_id = session_id
        self._conversation = conversation
        self._pipeline = pipeline
        self._send = send
        self._tasks = tasks
        self._observer = observer
        self._config = config
        self._system_prompt = system_prompt
        self._on_started = on_started
        self._on_quiet = on_quiet
        self._clock = clock
        self.playback = playback
        self._active: tuple[Response, asyncio.Task[None]] | None = None
        self.last_response_id: str | None = None
        self.audio_produced = False  # the voice is locked once the session has spoken

    @property
    def active(self) -> Response | None:
        return self._active[0] if self._active is not None else None

    async def start(self, options: ResponseOptions, turn: Turn, cancel_previous: bool,
                    speculation: Speculation | None = None) -> Response:
        """`speculation`: an answer started at the pause, which the response adopts if it
        asked for the same request (it is discarded otherwise)."""
        if self._active is not None:
            if not cancel_previous:
                if speculation is not None:
                    speculation.discard("unused")
                raise ProtocolError(ErrorCode.ACTIVE_RESPONSE,
                                    f"response {self._active[0].id} is still in progress")
            await self.cancel("client_cancelled")
        response = Response(options, self._conversation, self._pipeline, self._send,
                            self._system_prompt(), on_audio=self._mark_audio, turn=turn,
                            pace=self.playback.pace, speculation=speculation)
        with turn.current():
            task = self._tasks.start(self._run(response))
        self._active = (response, task)
        self.last_response_id = response.id
        self._on_started()
        return response

    async def cancel(self, reason: CancelReason) -> None:
        """Stop the active response (if any) everywhere and wait for its close-out."""
        if self._active is None:
            return
        response, task = self._active
        self._active = None
        if reason == "turn_detected":
            self._observer.barge_in()
            log.info("barge_in session=%s response=%s", self._session_id, response.id)
        response.mark_cancelled(reason)
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_WAIT_S)
        if not task.done():
            log.error("session %s: response %s did not stop within %.0f s", self._session_id,
                      response.id, CANCEL_WAIT_S)
        elif not response.done.is_set():
            # cancelled before its task first ran: it still gets its created/done pair
            await response.finish_unstarted()
            await self._report(response)
        td = self._config().turn_detection
        if reason == "turn_detected" and td is not None and td.auto_truncate:
            await self._auto_truncate(response)

    async def _run(self, response: Response) -> None:
        try:
            await response.run()
        finally:
            if self._active is not None and self._active[0] is response:
                self._active = None
                self._on_quiet()  # it ended by itself: the agent is quiet now
            await self._report(response)

    def _mark_audio(self) -> None:
        self.audio_produced = True

    async def _report(self, response: Response) -> None:
        """Metrics, one structured log line and (opt-in) the timing event for a finished turn."""
        times = response.stage_times()
        for stage, value in times.items():
            if value is not None and stage != "total":
                self._observer.stage(stage, value)
        self._observer.turn_done(response.status)
        self._observer.tokens("input", response.usage.input_text_tokens)
        self._observer.tokens("cached", response.usage.cached_tokens)
        self._observer.tokens("output", response.usage.output_text_tokens)
        self._observer.audio_seconds("out", response.audio_seconds_out)
        log.info("turn.done session=%s response=%s status=%s %s", self._session_id, response.id,
                 response.status, " ".join(f"{k}_ms={v}" for k, v in times.items()))
        await self._send(times.event(response.id, response.status))  # dropped unless opted in

    async def _auto_truncate(self, response: Response) -> None:
        """Voice Live `auto_truncate`: cut the interrupted answer where the client had played
        it, estimated as real-time playback from the first audio sent (we do not see playback)."""
        item_id = response.spoken_item_id
        spoken = self._conversation.spoken.get(item_id or "")
        if item_id is None or spoken is None or not response.timings.first_audio_sent:
            return
        started = response.spoken_started  # 0: the message's text went out, none of its audio
        played = min(spoken.duration_ms, max(0.0, self._clock() - started) * 1000) if started \
            else 0.0
        item: Item = self._conversation.get(item_id)
        item.content[0].transcript = spoken.text_until(played)
        await self._send(ItemTruncatedEvent(item_id=item_id, content_index=0,
                                            audio_end_ms=int(played)))
