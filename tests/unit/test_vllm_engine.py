"""The vLLM engine against a fake `vllm` module (vLLM is not installed on CPU hosts): the
options' seed and temperature reach SamplingParams, and a conversation past max_model_len is
shortened before it is rendered."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from voxserve.models.base import ChatRequest, LlmDelta
from voxserve.models.sampling import SamplingOverrides

pytestmark = pytest.mark.unit


class _Params:
    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


class _WordTokenizer:
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [len(w) for w in text.split()]

    def decode(self, tokens: Sequence[int]) -> str:
        return " ".join("x" * t for t in tokens)

    def apply_chat_template(self, messages: list[dict[str, Any]], tokenize: bool,
                            add_generation_prompt: bool) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


@dataclass
class _Completion:
    text: str
    token_ids: list[int]
    finish_reason: str | None = None


@dataclass
class _Output:
    outputs: list[_Completion]
    finished: bool
    prompt_token_ids: list[int] = field(default_factory=list)


class _FakeAsyncEngine:
    def __init__(self, max_model_len: int) -> None:
        self.max_model_len = max_model_len
        self.calls: list[tuple[str, Any]] = []

    async def get_tokenizer(self) -> _WordTokenizer:
        return _WordTokenizer()

    async def get_model_config(self) -> Any:
        return types.SimpleNamespace(max_model_len=self.max_model_len)

    async def generate(self, prompt: str, params: Any, request_id: str) -> AsyncGenerator[_Output, None]:
        self.calls.append((prompt, params))
        words = ["Hello", " there."]
        for i in range(len(words)):
            yield _Output([_Completion("".join(words[:i + 1]), list(range(i + 1)),
                                       "stop" if i == len(words) - 1 else None)],
                          finished=i == len(words) - 1, prompt_token_ids=[0] * len(prompt.split()))

    async def abort(self, request_id: str) -> None:
        pass


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> _FakeAsyncEngine:
    engine = _FakeAsyncEngine(max_model_len=1024)
    vllm = types.ModuleType("vllm")
    vllm.AsyncEngineArgs = _Params  # type: ignore[attr-defined]
    vllm.SamplingParams = _Params  # type: ignore[attr-defined]
    vllm.AsyncLLMEngine = types.SimpleNamespace(  # type: ignore[attr-defined]
        from_engine_args=lambda args: engine)
    sampling_params = types.ModuleType("vllm.sampling_params")
    sampling_params.GuidedDecodingParams = _Params  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling_params)
    return engine


def _run(engine: Any, request: ChatRequest) -> list[LlmDelta]:
    async def collect() -> list[LlmDelta]:
        return [d async for d in engine.stream(request)]
    return asyncio.run(collect())


def test_sampling_overrides_replace_the_requests_temperature_only_when_set() -> None:
    request = ChatRequest(messages=[], temperature=0.9)
    assert SamplingOverrides().temperature_for(request) == 0.9
    assert SamplingOverrides(temperature=0.0).temperature_for(request) == 0.0


def test_vllm_seed_and_temperature_override_reach_sampling_params(fake_vllm: _FakeAsyncEngine) -> None:
    from voxserve.models.vllm_llm import VllmEngine

    engine = VllmEngine("fake/model", seed=1234, temperature=0.0)
    deltas = _run(engine, ChatRequest(messages=[{"role": "user", "content": "Hi"}], temperature=1.2))
    assert "".join(d.text for d in deltas) == "Hello there." and deltas[-1].finish_reason == "stop"
    params = fake_vllm.calls[0][1]
    assert params.seed == 1234 and params.temperature == 0.0
    unset = VllmEngine("fake/model")
    _run(unset, ChatRequest(messages=[{"role": "user", "content": "Hi"}], temperature=1.2))
    assert fake_vllm.calls[1][1].seed is None and fake_vllm.calls[1][1].temperature == 1.2


def test_vllm_conversation_past_max_model_len_is_shortened(fake_vllm: _FakeAsyncEngine) -> None:
    from voxserve.models.vllm_llm import VllmEngine

    engine = VllmEngine("fake/model")
    long = " ".join(["word"] * 100)
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(30):
        messages += [{"role": "user", "content": f"u{i} {long}"},
                     {"role": "assistant", "content": f"a{i} {long}"}]
    messages.append({"role": "user", "content": "latest question"})
    deltas = _run(engine, ChatRequest(messages=messages, max_tokens=64))
    assert deltas[-1].kind == "done"
    prompt = fake_vllm.calls[0][0]
    assert prompt.startswith("system: Be brief.") and prompt.endswith("user: latest question")
    assert "u0 " not in prompt and len(prompt.split()) < 1024
