"""The application graph: Ingress -> (ASR, LLM, TTS), each with its own replica settings.

`voxserve serve` deploys `build_graph`; `build_app` is the same graph behind the Serve import
path of the configs in `cluster/` (`import_path: voxserve.deployments.app:build_app`,
`args: {options_file: ...}`).
"""

from __future__ import annotations

import os
from typing import Any

from ray.serve import Application

from voxserve.config import VoxServeOptions, load_options, with_environment_keys
from voxserve.deployments.ingress import IngressDeployment
from voxserve.deployments.stages import AsrDeployment, LlmDeployment, TtsDeployment


def build_graph(options: VoxServeOptions) -> Application:
    d = options.deployments
    asr = AsrDeployment.options(**d.asr.serve_kwargs("voxserve-asr")).bind(
        options.asr.model_dump())
    llm = LlmDeployment.options(**d.llm.serve_kwargs("voxserve-llm")).bind(
        options.llm.model_dump())
    tts = TtsDeployment.options(**d.tts.serve_kwargs("voxserve-tts")).bind(
        options.tts.model_dump())
    return IngressDeployment.options(**d.ingress.serve_kwargs("voxserve-ingress")).bind(
        options.model_dump(), asr, llm, tts)


def build_app(args: dict[str, Any]) -> Application:
    """Serve config entry point: `args` may name an `options_file` and/or inline `options`."""
    options = load_options(args.get("options_file"), args.get("options"))
    return build_graph(with_environment_keys(options, os.environ))
