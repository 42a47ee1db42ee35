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
  does not emit native tool calls reliably).
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
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .base import ChatRequest, LlmDelta
from .context_window import ByteTokenizer, fit_messages, needs_fitting, without_marks
from .sampling import SamplingOverrides
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


class LlamaCppEngine:
    """`LlmEngine` on an in-process llama.cpp server.

    model_path: a GGUF file; None assembles the packaged Qwen2.5-Coder-0.5B-Instruct Q4_K_M.
    n_ctx: context tokens per slot; n_parallel slots share one model (continuous batching).
    n_threads: 1 by default: with ASR and TTS on the same two cores, llama.cpp's spinning worker
    threads collapse under contention, one thread holds its rate.
    seed, temperature: server-side sampling settings that override every request's
    (`SamplingOverrides`). A seed also makes the engine reproducible (`reproducible`): one slot
    and no prompt cache, see below.
    """

    name = "llamacpp"

    def __init__(self, model_path: str | Path | None = None, *, n_ctx: int = 4096, n_parallel: int = 1,
                 n_threads: int = 1, n_batch: int = 512, cache_ram_mib: int = 512,
                 default_max_tokens: int = 512, n_gpu_layers: int = 0, verbosity: int = 1,
                 seed: int | None = None, temperature: float | None = None) -> None:
        import xllamacpp  # heavy native module: import only when an engine is built

        if model_path is None:
            from .weights import qwen_05b_gguf
            model_path = qwen_05b_gguf()
        self.model_path = str(model_path)
        self.default_max_tokens = default_max_tokens
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
              strict_arguments: bool = True) -> tuple[dict[str, Any], bool]:
        tool_mode = uses_tools(request.tools, request.tool_choice)
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
        if tool_mode:
            schema = answer_schema(request.tools, request.tool_choice, strict_arguments=strict_arguments)
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": schema}}
        return body, tool_mode

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

    async def _raw_stream(self, request: ChatRequest) -> AsyncGenerator[dict[str, Any], None]:
        messages = await self._messages(request)
        body, tool_mode = self._body(request, messages)
        try:
            # The first chunk comes only after prefill: any schema error is raised before it.
            first = True
            async for chunk in self._chunks(body):
                first = False
                yield chunk
        except LlmError as exc:
            # A tool's parameter schema llguidance cannot compile: retry with loose arguments.
            if not (tool_mode and first and "schema" in str(exc).lower()):
                raise
            log.warning("tool schema rejected (%s); retrying with unconstrained arguments", exc)
            body, _ = self._body(request, messages, strict_arguments=False)
            async for chunk in self._chunks(body):
                yield chunk

    async def stream(self, request: ChatRequest) -> AsyncGenerator[LlmDelta, None]:
        tool_mode = uses_tools(request.tools, request.tool_choice)
        extractor = JsonStringFieldExtractor("text")
        raw: list[str] = []
        finish = ""
        usage: dict[str, Any] = {}
        chunks = self._raw_stream(request)
        try:
            async for chunk in chunks:
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                    if not piece:
                        continue
                    if not tool_mode:
                        yield LlmDelta(kind="text", text=piece)
                        continue
                    raw.append(piece)
                    # Speak the message text as it decodes; a tool call yields nothing yet.
                    text = extractor.feed(piece)
                    if text:
                        yield LlmDelta(kind="text", text=text)
        finally:
            await chunks.aclose()  # stops generation when our consumer went away early

        finish_reason = "length" if finish == "length" else "stop"
        if tool_mode and finish != "length":
            try:
                kind, name_or_text, arguments = parse_answer("".join(raw))
            except (json.JSONDecodeError, AttributeError) as exc:
                raise LlmError(f"constrained answer is not valid JSON: {''.join(raw)[:200]!r}") from exc
            if kind == "tool_call":
                yield LlmDelta(kind="tool_call", name=name_or_text, arguments=arguments)
                finish_reason = "tool_call"
        details = usage.get("prompt_tokens_details") or {}
        yield LlmDelta(kind="done", prompt_tokens=int(usage.get("prompt_tokens", 0)),
                       cached_tokens=int(details.get("cached_tokens", 0)),
                       completion_tokens=int(usage.get("completion_tokens", 0)),
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
        body, _ = self._body(request, await self._messages(request))
        body.pop("response_format", None)  # only the prompt matters; skip grammar compilation
        async for _ in self._chunks(body):
            pass
