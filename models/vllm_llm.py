"""LLM engine on vLLM's AsyncLLMEngine, for GPU configurations.

vLLM is not installed on CPU hosts, so it is imported inside the constructor: this module imports
anywhere. Behaviour mirrors `LlamaCppEngine`: the chat prompt comes from the model tokenizer's
chat template, text is streamed as deltas of vLLM's cumulative outputs, a closed or cancelled
consumer aborts the request in vLLM (`abort(request_id)` in a finally block), and tool calls use
the same say-or-call JSON schema (`models.tool_schema`) through vLLM's guided JSON decoding.
vLLM's automatic prefix caching keeps shared system prompts warm; `warm()` prefills them. A
conversation past `max_model_len` loses its oldest history before it is sent, as on llama.cpp
(`models.context_window`, counted with the model's own tokenizer), so it is answered rather than
refused by vLLM on every later turn.

Written against the vLLM 0.6-0.10 API (AsyncEngineArgs, SamplingParams, GuidedDecodingParams);
it has not been run in this repository's CI (no GPU there).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from .base import DEFAULT_TRUNCATION, ChatRequest, LlmDelta, ToolSpec, Truncation
from .context_window import fit_messages, needs_fitting, without_marks
from .sampling import SamplingOverrides
from .tool_schema import JsonStringFieldExtractor, answer_schema, parse_answer, prepare_messages, uses_tools

log = logging.getLogger(__name__)


class _HfTokenizer:
    """`context_window.Tokenizer` on the engine's Hugging Face tokenizer, without special tokens
    (the chat template adds those, and `context_window` counts them separately)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def decode(self, tokens: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(tokens)))


class VllmEngine:
    """`LlmEngine` on vLLM. `model` is a hub name or local HF-format directory.

    seed, temperature: server-side sampling settings that override every request's
    (`SamplingOverrides`); the seed goes into each request's SamplingParams, so it holds per
    request whatever else is batched beside it.
    """

    name = "vllm"

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85,
                 max_model_len: int | None = None, default_max_tokens: int = 512,
                 seed: int | None = None, temperature: float | None = None) -> None:
        from vllm import AsyncEngineArgs, AsyncLLMEngine, SamplingParams
        from vllm.sampling_params import GuidedDecodingParams

        self._SamplingParams = SamplingParams
        self._GuidedDecodingParams = GuidedDecodingParams
        args = AsyncEngineArgs(model=model, tensor_parallel_size=tensor_parallel_size,
                               gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                               enable_prefix_caching=True)
        self._engine = AsyncLLMEngine.from_engine_args(args)
        self.default_max_tokens = default_max_tokens
        self._sampling = SamplingOverrides(seed=seed, temperature=temperature)
        self._tokenizer: Any = None
        self._max_model_len = 0

    async def _prompt(self, messages: list[dict[str, Any]], max_tokens: int, request_id: str = "",
                      policy: Truncation = DEFAULT_TRUNCATION) -> str:
        if self._tokenizer is None:
            self._tokenizer = await self._engine.get_tokenizer()
            # the engine's resolved value: the option if set, else the model's own limit
            self._max_model_len = int((await self._engine.get_model_config()).max_model_len)
        if needs_fitting(messages, n_ctx=self._max_model_len, max_tokens=max_tokens, policy=policy):
            fitted = await asyncio.to_thread(fit_messages, messages, _HfTokenizer(self._tokenizer),
                                             n_ctx=self._max_model_len, max_tokens=max_tokens,
                                             policy=policy)
            if fitted.changed:
                log.warning("context full: response %s: %s, to fit %d tokens with the answer",
                            request_id or "-", fitted.describe(), self._max_model_len)
            messages = fitted.messages
        messages = without_marks(messages)  # a no-op after fitting, which strips them
        return str(self._tokenizer.apply_chat_template(messages, tokenize=False,
                                                       add_generation_prompt=True))

    async def _generate(self, prompt: str, params: Any) -> AsyncGenerator[Any, None]:
        """vLLM's generate stream, aborted in vLLM when this generator is closed early."""
        request_id = uuid.uuid4().hex
        finished = False
        try:
            async for output in self._engine.generate(prompt, params, request_id):
                finished = output.finished
                yield output
        finally:
            if not finished:
                await self._engine.abort(request_id)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[LlmDelta, None]:
        tool_mode = uses_tools(request.tools, request.tool_choice)
        max_tokens = request.max_tokens or self.default_max_tokens
        prompt = await self._prompt(prepare_messages(request.messages, request.tools, request.tool_choice,
                                                     keep_marks=True),
                                    max_tokens, request.request_id, request.truncation)
        guided = None
        if tool_mode:
            guided = self._GuidedDecodingParams(json=answer_schema(request.tools, request.tool_choice))
        params = self._SamplingParams(temperature=self._sampling.temperature_for(request),
                                      seed=self._sampling.seed,
                                      max_tokens=max_tokens, guided_decoding=guided)
        extractor = JsonStringFieldExtractor("text")
        sent = 0
        last: Any = None
        outputs = self._generate(prompt, params)
        try:
            async for output in outputs:
                last = output
                text = output.outputs[0].text  # cumulative: emit only what is new
                piece, sent = text[sent:], len(text)
                if not piece:
                    continue
                if not tool_mode:
                    yield LlmDelta(kind="text", text=piece)
                elif spoken := extractor.feed(piece):
                    yield LlmDelta(kind="text", text=spoken)
        finally:
            await outputs.aclose()
        if last is None:
            return
        completion = last.outputs[0]
        finish_reason = "length" if completion.finish_reason == "length" else "stop"
        if tool_mode and finish_reason != "length":
            kind, name, arguments = parse_answer(completion.text)
            if kind == "tool_call":
                yield LlmDelta(kind="tool_call", name=name, arguments=arguments)
                finish_reason = "tool_call"
        yield LlmDelta(kind="done", prompt_tokens=len(last.prompt_token_ids or ()),
                       cached_tokens=int(getattr(last, "num_cached_tokens", 0) or 0),
                       completion_tokens=len(completion.token_ids),
                       finish_reason=finish_reason)  # type: ignore[arg-type]

    async def warm(self, messages: Sequence[dict[str, Any]], tools: Sequence[ToolSpec] = (),
                   tool_choice: str = "auto") -> None:
        prompt = await self._prompt(prepare_messages(list(messages), tools, tool_choice), 1)
        async for _ in self._generate(prompt, self._SamplingParams(max_tokens=1, temperature=0.0)):
            pass


__all__ = ["VllmEngine"]
