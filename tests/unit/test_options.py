"""The options file: defaults, validation errors, and the shipped cluster configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from voxserve.config import OptionsError, load_options

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_cpu_default_needs_no_file() -> None:
    opts = load_options()
    assert opts.asr.model == "packaged:whisper-base" and opts.llm.engine == "llamacpp"
    assert opts.deployments.ingress.max_ongoing_requests >= 100  # not Serve's hanging default 5
    assert not opts.server.auth_required()


def test_off_loopback_bind_requires_auth() -> None:
    assert load_options(data={"server": {"host": "0.0.0.0"}}).server.auth_required()
    assert load_options(data={"server": {"api_keys": ["k"]}}).server.auth_required()


def test_unknown_or_bad_fields_are_rejected_with_the_file_named(tmp_path: Path) -> None:
    bad = tmp_path / "o.yaml"
    bad.write_text("asr:\n  beam_size: 0\n")
    with pytest.raises(OptionsError, match="beam_size"):
        load_options(bad)
    bad.write_text("llm:\n  enginee: vllm\n")
    with pytest.raises(OptionsError, match="enginee"):
        load_options(bad)


def test_gpu_config_validates_and_serve_configs_point_at_the_app() -> None:
    gpu = load_options(ROOT / "cluster" / "gpu.yaml")
    assert gpu.llm.engine == "vllm" and gpu.deployments.llm.num_gpus == 1
    kwargs = gpu.deployments.llm.serve_kwargs("voxserve-llm")
    assert kwargs["autoscaling_config"]["max_replicas"] == 8
    for name in ("serve-cpu.yaml", "serve-gpu.yaml"):
        app = yaml.safe_load((ROOT / "cluster" / name).read_text())["applications"][0]
        assert app["import_path"] == "voxserve.deployments.app:build_app"


def test_serve_import_path_builds_the_graph_from_an_options_file() -> None:
    from ray.serve import Application

    from voxserve.deployments.app import build_app

    assert isinstance(build_app({"options_file": str(ROOT / "cluster" / "gpu.yaml")}), Application)


def test_llm_seed_and_temperature_override_are_off_by_default_and_validated() -> None:
    opts = load_options()
    assert opts.llm.seed is None and opts.llm.temperature is None
    fixed = load_options(data={"llm": {"seed": 1234, "temperature": 0}})
    assert fixed.llm.seed == 1234 and fixed.llm.temperature == 0.0
    with pytest.raises(OptionsError, match="temperature"):
        load_options(data={"llm": {"temperature": 3}})


def test_english_turns_go_to_the_fast_engine_unless_they_ask_for_what_only_whisper_does() -> None:
    from voxserve.config import AsrOptions, fast_engine

    default = AsrOptions()
    assert default.engine == "faster_whisper" and default.english == "moonshine"
    assert fast_engine(default, None)  # asr.language is "en"
    assert fast_engine(default, "en") and fast_engine(default, "en-GB")
    assert not fast_engine(default, "es") and not fast_engine(default, ("en", "es"))
    assert not fast_engine(default, "en", prompt="VoxServe, Ray")
    assert not fast_engine(default, "en", phrases=("Contoso",))
    assert not fast_engine(default, "en", word_probabilities=True)
    assert not fast_engine(default, "en", noisy=True)  # the session suppresses noise
    assert not fast_engine(AsrOptions(language=None), None)  # detection among all: Whisper
    assert not fast_engine(AsrOptions(english=None), "en")
    assert fast_engine(AsrOptions(engine="moonshine"), "en", phrases=("x",))
