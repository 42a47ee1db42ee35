"""Options -> engines. Imports are lazy so a replica loads only its own model family."""

from __future__ import annotations

import logging
import time
from typing import Any

from voxserve.config import AsrOptions, LlmOptions, TtsOptions

log = logging.getLogger("voxserve.engines")

PACKAGED = "packaged:"


def build_asr(opts: AsrOptions) -> Any:
    from voxserve.models.whisper_asr import FasterWhisperEngine

    started = time.monotonic()
    if opts.model == "packaged:whisper-base":
        from voxserve.models.weights import whisper_base_dir
        model: str = str(whisper_base_dir())
    elif opts.model.startswith(PACKAGED):
        raise ValueError(f"unknown packaged ASR model {opts.model!r}; packaged: whisper-base")
    else:
        model = opts.model
    engine = FasterWhisperEngine(model, device=opts.device, compute_type=opts.compute_type,
                                 cpu_threads=opts.cpu_threads, num_workers=opts.num_workers,
                                 beam_size=opts.beam_size, word_timestamps=opts.word_timestamps)
    log.info("ASR %s loaded in %.1f s", opts.model, time.monotonic() - started)
    return engine


def build_llm(opts: LlmOptions) -> Any:
    started = time.monotonic()
    if opts.engine == "vllm":
        from voxserve.models.vllm_llm import VllmEngine
        engine: Any = VllmEngine(opts.model, tensor_parallel_size=opts.tensor_parallel_size,
                                 gpu_memory_utilization=opts.gpu_memory_utilization,
                                 max_model_len=opts.max_model_len, seed=opts.seed,
                                 temperature=opts.temperature)
    else:
        from voxserve.models.llamacpp_llm import LlamaCppEngine
        if opts.model == "packaged:qwen2.5-coder-0.5b-instruct-q4_k_m":
            from voxserve.models.weights import qwen_05b_gguf
            path = str(qwen_05b_gguf())
        elif opts.model.startswith(PACKAGED):
            raise ValueError(f"unknown packaged LLM {opts.model!r}; packaged: "
                             "qwen2.5-coder-0.5b-instruct-q4_k_m")
        else:
            path = opts.model
        engine = LlamaCppEngine(path, n_ctx=opts.n_ctx, n_parallel=opts.n_parallel,
                                n_threads=opts.n_threads, seed=opts.seed,
                                temperature=opts.temperature)
    log.info("LLM %s loaded in %.1f s", opts.model, time.monotonic() - started)
    return engine


def build_tts(opts: TtsOptions) -> Any:
    from voxserve.models.hibari_tts import HibariTtsEngine

    started = time.monotonic()
    engine = HibariTtsEngine()
    log.info("TTS hibari loaded in %.1f s", time.monotonic() - started)
    return engine
