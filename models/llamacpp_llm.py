"""LLM engine on xllamacpp: llama.cpp's server embedded in the process (the CPU default).

xllamacpp exposes llama.cpp's HTTP server handlers as blocking Python calls that take an
OpenAI-style chat-completions dict. With `"stream": True` the call blocks until generation ends and
invokes a callback per chunk; the callback returning True stops the request. This engine runs each
call on a worker thread (the call releases the GIL) and bridges chunks into an asyncio queue, so:

* streaming: chunks are yielded as `LlmDelta`s as they arrive;
* cancellation: closing or cancelling the consuming generator sets a flag that the next callback
  sees, and llama.cpp frees the slot at once (measured: ~0.03 core-seconds used in the 2 s after a
  stop, i.e. generation really stops). A request still in prompt prefill is only stopped at its
  first token, because the callback is not called before then;
* prefix reuse: `cache_prompt` keeps each slot's KV cache, so a request sharing the warmed system
  prompt only prefills the new suffix (`warm()`), and the host-RAM prompt cache (`cache_ram_mib`)
  lets other slots pick it up;
* tool calls: JSON-schema constrained decoding via `models.tool_schema` (the 0.5B Qwen default
  does not emit native tool calls reliably), with the speak-or-call decision taken first on its
  own and the spoken answer's JSON opening prefilled (`models.tool_decision`).
* a conversation past the context: its oldest history is dropped before it is sent
  (`models.context_window`), so it gets an answer instead of an error on every later turn.

The embedded server also listens on a random 127.0.0.1 port (no way to turn it off in this
version); a random API key locks that port so nothing else on the host can use it. The Python
handlers are not subject to the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
import urllib.request
from dataclasses import dataclass
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .base import ChatRequest, LlmDelta
from .context_window import ByteTokenizer, fit_messages, needs_fitting, without_marks
from .sampling import SamplingOverrides
from .tool_decision import (
    AFTER_RESULT_THRESHOLD, DEFAULT_CALL_THRESHOLD, JSON_STRING_REST, MESSAGE_OPENING, OPENING, TOP_LOGPROBS,
    after_tool_result, call_probability, decides, grounded, repeats_call,
)
from .tool_schema import JsonStringFieldExtractor, answer_schema, parse_answer, prepare_messages, uses_tools

log = logging.getLogger(__name__)

_END = object()  # queue sentinel: the worker thread has returned


class LlmError(RuntimeError):
    """The LLM rejected or failed a request (context overflow, bad schema, ...)."""


class _ServerTokenizer:
    """The model's tokenizer, through the embedded server's side HTTP port (`/tokenize`,
    `/detokenize`): xllamacpp gives Python no tokenize handler. The port answers these on its
    HTTP threads, not through a slot, so a busy slot does not hold them up."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(self._base + path, data=json.dumps(body).encode(),
                                         headers=self._headers)
        with urllib.request.urlopen(request, timeout=30) as reply:
            answer: dict[str, Any] = json.loads(reply.read())
        return answer

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in self._post("/tokenize", {"content": text, "add_special": False})["tokens"]]

    def decode(self, tokens: Sequence[int]) -> str:
        return str(self._post("/detokenize", {"tokens": list(tokens)})["content"])


@dataclass
class _Usage:
    """Token usage and finish reason of one streamed call, from its chunks."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    finish: str = ""

    def add(self, chunk: dict[str, Any]) -> None:
        if usage := chunk.get("usage"):
            details = usage.get("prompt_tokens_details") or {}
            self.prompt_tokens = int(usage.get("prompt_tokens", 0))
            self.cached_tokens = int(details.get("cached_tokens", 0))
            self.completion_tokens = int(usage.get("completion_tokens", 0))
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]


class LlamaCppEngine:
    """`LlmEngine` on an in-process llama.cpp server.

    model_path: a GGUF file; None assembles the packaged Qwen2.5-Coder-0.5B-Instruct Q4_K_M.
    n_ctx: context tokens per slot; n_parallel slots share one model (continuous batching).
    n_threads: 1 by default: with ASR and TTS on the same two cores, llama.cpp's spinning worker
    threads collapse under contention, one thread holds its rate.
    call_threshold: P(call) at which a `tool_choice: "auto"` answer calls (`models.tool_decision`).
    seed, temperature: server-side sampling settings that override every request's
    (`SamplingOverrides`). A seed also makes the engine reproducible (`reproducible`): one slot
    and no prompt cache, see below.
    """

    name = "llamacpp"

    def __init__(self, model_path: str | Path | None = None, *, n_ctx: int = 4096, n_parallel: int = 1,
                 n_threads: int = 1, n_batch: int = 512, cache_ram_mib: int = 512,
                 default_max_tokens: int = 512, n_gpu_layers: int = 0, verbosity: int = 1,
                 seed: int | None = None, temperature: float | None = None,
                 call_threshold: float = DEFAULT_CALL_THRESHOLD) -> None:
        import xllamacpp  # heavy native module: import only when an engine is built

        if model_path is None:
            from .weights import qwen_05b_gguf
            model_path = qwen_05b_gguf()
        self.model_path = str(model_path)
        self.default_max_tokens = default_max_tokens
        self.call_threshold = call_threshold
        self._sampling = SamplingOverrides(seed=seed, temperature=temperature)
        # A seed asks for the same answer to the same conversation, which llama.cpp gives only
        # one request at a time and without its prompt cache: a token's logits depend on the
        # batch shape it was computed in. Measured on the packaged model: a greedy story parted
        # after ~12 tokens between a fresh prompt and the same prompt taken from the cache, and
        # again when a second slot decoded alongside; with neither, every run matched, greedy and
        # sampled at temperature 1 with a seed. The price is a full prefill per request and no
        # overlap between sessions: for tests and reproducible agents, not for serving many.
        self.reproducible = seed is not None
        if self.reproducible:
            n_parallel, cache_ram_mib = 1, 0  # 0 turns the RAM prompt cache off
        self._n_ctx = n_ctx
        api_key = secrets.token_hex(16)
        params = xllamacpp.CommonParams()
        params.model.path = self.model_path
        params.n_parallel = n_parallel
        params.n_ctx = n_ctx * n_parallel  # the server splits n_ctx across its slots
        params.n_batch = n_batch
        params.cpuparams.n_threads = n_threads
        params.cpuparams_batch.n_threads = n_threads
        params.n_gpu_layers = n_gpu_layers
        params.cache_prompt = not self.reproducible
        params.cache_ram_mib = cache_ram_mib  # default 8 GiB is far more than this box can spare
        params.offline = True  # never reach a model hub
        params.verbosity = verbosity  # 3 (default) logs every slot event to stderr
        params.api_keys = [api_key]  # lock the side HTTP port (see module docstring)
        t0 = time.monotonic()
        self._server = xllamacpp.Server(params)
        self._tokenizer = _ServerTokenizer(self._server.listening_address, api_key)
        log.info("llama.cpp loaded %s in %.1f s", Path(self.model_path).name, time.monotonic() - t0)
        # Each in-flight request blocks one thread for its whole life; requests beyond n_parallel
        # queue inside llama.cpp, so a few spare threads keep them queued there rather than here.
        self._executor = ThreadPoolExecutor(max_workers=n_parallel + 4, thread_name_prefix="llamacpp")

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._server = None

    # -- request building --------------------------------------------------------------------
    async def _messages(self, request: ChatRequest) -> list[dict[str, Any]]:
        """The request's chat messages, shortened to fit the context (`models.context_window`)."""
        messages = prepare_messages(request.messages, request.tools, request.tool_choice,
                                    keep_marks=True)  # tool results marked for the fitting
        max_tokens = request.max_tokens or self.default_max_tokens
        policy = request.truncation
        if not needs_fitting(messages, n_ctx=self._n_ctx, max_tokens=max_tokens, policy=policy):
            return without_marks(messages)
        # tokenizing is an HTTP round trip (see _ServerTokenizer): off the event loop
        try:
            fitted = await asyncio.to_thread(fit_messages, messages, self._tokenizer,
                                             n_ctx=self._n_ctx, max_tokens=max_tokens,
                                             policy=policy)
        except (OSError, ValueError, KeyError) as exc:
            # the side port failed: fit by bytes rather than send a prompt llama.cpp may refuse
            log.warning("tokenizer port failed (%r); fitting the prompt by its bytes", exc)
            fitted = fit_messages(messages, ByteTokenizer(), n_ctx=self._n_ctx,
                                  max_tokens=max_tokens, policy=policy)
        if fitted.changed:
            log.warning("context full: response %s: %s, to fit %d tokens with the answer",
                        request.request_id or "-", fitted.describe(), self._n_ctx)
        return fitted.messages

    def _body(self, request: ChatRequest, messages: list[dict[str, Any]], *,
              schema_choice: str | None = None, strict_arguments: bool = True) -> dict[str, Any]:
        """The chat-completions body; `schema_choice`: constrain the answer to the say-or-call
        schema for that tool choice (see `models.tool_schema.answer_schema`)."""
        body: dict[str, Any] = {
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": request.max_tokens or self.default_max_tokens,
            "temperature": self._sampling.temperature_for(request),
            "cache_prompt": not self.reproducible,
        }
        if self._sampling.seed is not None:
            body["seed"] = self._sampling.seed
        if schema_choice is not None:
            schema = answer_schema(request.tools, schema_choice, strict_arguments=strict_arguments)
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": schema}}
        return body

    # -- streaming ---------------------------------------------------------------------------
    async def _chunks(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Run one streaming call on a worker thread and yield its raw chunks.

        When this generator is closed or cancelled the flag makes the next callback return True,
        which ends the llama.cpp task and returns the worker thread.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # loop closed under us: nobody is listening any more
                stop.set()

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if stop.is_set():
                return True
            put(chunk)
            return False

        def work() -> None:
            try:
                self._server.handle_chat_completions(body, on_chunk)
                put(_END)
            except BaseException as exc:  # surfaced to the consumer, not lost in the thread
                put(exc)

        loop.run_in_executor(self._executor, work)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise LlmError(str(item)) from item
                if "error" in item:
                    err = item["error"]
                    raise LlmError(f"{err.get('type', 'error')}: {err.get('message', err)}")
                yield item
        finally:
            stop.set()

    async def _schema_chunks(self, request: ChatRequest, messages: list[dict[str, Any]],
                             choice: str) -> AsyncGenerator[dict[str, Any], None]:
        body = self._body(request, messages, schema_choice=choice)
        try:
            # The first chunk comes only after prefill: any schema error is raised before it.
            first = True
            async for chunk in self._chunks(body):
                first = False
                yield chunk
        except LlmError as exc:
            # A tool's parameter schema llguidance cannot compile: retry with loose arguments.
            if not (first and "schema" in str(exc).lower()):
                raise
            log.warning("tool schema rejected (%s); retrying with unconstrained arguments", exc)
            body = self._body(request, messages, schema_choice=choice, strict_arguments=False)
            async for chunk in self._chunks(body):
                yield chunk

    async def _text(self, chunks: AsyncGenerator[dict[str, Any], None], usage: _Usage,
                    extractor: JsonStringFieldExtractor | None = None
                    ) -> AsyncGenerator[str, None]:
        """The content pieces of a streamed call (through `extractor`: the spoken text of a JSON
        answer); usage and finish reason land in `usage`."""
        try:
            async for chunk in chunks:
                usage.add(chunk)
                for choice in chunk.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if not piece:
                        continue
                    text = extractor.feed(piece) if extractor is not None else piece
                    if text:
                        yield text
        finally:
            await chunks.aclose()  # stops generation when our consumer went away early

    async def call_probability(self, request: ChatRequest,
                               messages: list[dict[str, Any]] | None = None) -> float:
        """P(call) for an "auto" tool answer (`models.tool_decision`): one token after the
        answer's opening, with its top probabilities."""
        if messages is None:
            messages = await self._messages(request)
        body = self._body(request, [*messages, {"role": "assistant", "content": OPENING}])
        body.update(max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=TOP_LOGPROBS)
        body.pop("stream_options")
        top: list[tuple[str, float]] = []
        async for chunk in self._chunks(body):
            for choice in chunk.get("choices") or ():
                for entry in (choice.get("logprobs") or {}).get("content") or ():
                    if not top:
                        top = [(t["token"], t["logprob"]) for t in entry.get("top_logprobs", ())]
        return call_probability(top, request.tools)

    async def _decide_call(self, request: ChatRequest, messages: list[dict[str, Any]]) -> bool:
        choice = request.tool_choice
        if choice == "none":
            return False
        if not decides(choice):
            return True  # "required" or a named tool
        p = await self.call_probability(request, messages)
        after = after_tool_result(request.messages)
        threshold = max(self.call_threshold, AFTER_RESULT_THRESHOLD) if after else self.call_threshold
        log.debug("response %s: P(call) %.3f, threshold %.2f", request.request_id or "-", p, threshold)
        return p >= threshold

    async def _speak(self, request: ChatRequest, messages: list[dict[str, Any]],
                     usage: _Usage) -> AsyncGenerator[LlmDelta, None]:
        """A spoken answer in the constrained shape with its opening prefilled: the first token
        generated is the first word."""
        extractor = JsonStringFieldExtractor("text")
        extractor.feed(MESSAGE_OPENING)
        body = self._body(request, [*messages, {"role": "assistant", "content": MESSAGE_OPENING}])
        body["grammar"] = JSON_STRING_REST  # the text, then the answer's close: it cannot ramble on
        async for text in self._text(self._chunks(body), usage, extractor):
            yield LlmDelta(kind="text", text=text)

    async def _call(self, request: ChatRequest, messages: list[dict[str, Any]],
                    usage: _Usage) -> tuple[str, str] | None:
        """A tool call decoded with the schema of the request's tools; None when it ran out of
        tokens before the JSON closed."""
        choice = "required" if decides(request.tool_choice) else request.tool_choice
        raw = [piece async for piece in self._text(self._schema_chunks(request, messages, choice), usage)]
        if usage.finish == "length":
            return None
        try:
            kind, name, arguments = parse_answer("".join(raw))
        except (json.JSONDecodeError, AttributeError) as exc:
            raise LlmError(f"constrained answer is not valid JSON: {''.join(raw)[:200]!r}") from exc
        return (name, arguments) if kind == "tool_call" else None

    @staticmethod
    def _kept(request: ChatRequest, name: str, arguments: str) -> tuple[str, str] | None:
        """An "auto" call, unless it repeats one already answered or makes up its arguments
        (`models.tool_decision`): the answer then speaks instead."""
        if repeats_call(request.messages, name, arguments):
            why = "repeats a call already answered"
        elif not grounded(name, arguments, request.tools, request.messages):
            why = "has arguments the conversation never mentions"
        else:
            return name, arguments
        log.info("response %s: %s%s %s; speaking instead", request.request_id or "-", name,
                 arguments, why)
        return None

    async def stream(self, request: ChatRequest) -> AsyncGenerator[LlmDelta, None]:
        messages = await self._messages(request)
        usage = _Usage()
        finish_reason = "stop"
        if not uses_tools(request.tools, request.tool_choice):
            async for text in self._text(self._chunks(self._body(request, messages)), usage):
                yield LlmDelta(kind="text", text=text)
        else:
            call = await self._call(request, messages, usage) \
                if await self._decide_call(request, messages) else None
            if call is not None and decides(request.tool_choice):
                call = self._kept(request, *call)
            if call is not None:
                yield LlmDelta(kind="tool_call", name=call[0], arguments=call[1])
                finish_reason = "tool_call"
            elif usage.finish != "length":
                usage = _Usage()
                async for delta in self._speak(request, messages, usage):
                    yield delta
        if usage.finish == "length":
            finish_reason = "length"
        yield LlmDelta(kind="done", prompt_tokens=usage.prompt_tokens, cached_tokens=usage.cached_tokens,
                       completion_tokens=usage.completion_tokens,
                       finish_reason=finish_reason)  # type: ignore[arg-type]

    async def warm(self, messages: Sequence[dict[str, Any]], tools: Sequence[Any] = (),
                   tool_choice: str = "auto") -> None:
        """Prefill `messages` (rendered as a request with `tools` would render them) with a 1-token
        generation, so the slot's KV cache and the RAM prompt cache hold that prefix.

        `tools` is optional: the tool block is appended after the system prompt, so a prefix warmed
        without it is still reused up to that point. A reproducible engine keeps no cache: nothing
        to warm."""
        if self.reproducible:
            return
        request = ChatRequest(messages=list(messages), tools=tuple(tools), tool_choice=tool_choice,
                              temperature=0.0, max_tokens=1)
        body = self._body(request, await self._messages(request))
        async for _ in self._chunks(body):
            pass
