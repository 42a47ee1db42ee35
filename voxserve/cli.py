"""Command line: `voxserve serve` runs the server, `voxserve talk` speaks a recording to it,
`voxserve bench` measures time to first audio under load.

`serve` starts a local Ray instance (or joins one with --address), assembles the packaged model
weights with progress, deploys the Serve app, prints each deployment's progress while models
load, and on SIGINT/SIGTERM removes the app and stops the Ray instance it started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from voxserve.config import (
    API_KEYS_ENV, OptionsError, VoxServeOptions, load_options, with_environment_keys,
)
from voxserve.knowledge.index import KnowledgeIndex


def _say(message: str) -> None:
    print(f"[voxserve {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _prepare_weights(options: VoxServeOptions) -> None:
    """Assemble packaged weights here, once, so progress is visible and replicas start fast."""
    from voxserve.models import weights

    jobs = []
    if options.asr.model == "packaged:whisper-base":
        jobs.append(("ASR Whisper base", weights.whisper_base_dir))
    if options.llm.engine == "llamacpp" and options.llm.model.startswith("packaged:"):
        jobs.append(("LLM Qwen2.5-Coder-0.5B-Instruct Q4_K_M", weights.qwen_05b_gguf))
    for label, fn in jobs:
        started = time.monotonic()
        path = Path(fn())
        size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
        _say(f"{label}: {size / 1e6:.0f} MB ready at {path} ({time.monotonic() - started:.1f} s)")


def _index_knowledge(options: VoxServeOptions) -> KnowledgeIndex | None:
    """Index the knowledge documents here, with progress, so the ingress starts on an index
    that is up to date; their paths become absolute (Ray workers run in another directory).
    The open index, or None, with the reason printed, when the documents cannot be indexed."""
    from voxserve.knowledge.setup import index_path, open_index

    k = options.knowledge
    assert k.documents is not None
    k.documents = str(Path(k.documents).expanduser().resolve())
    k.index = str(index_path(k).resolve())
    try:
        return open_index(k, _say)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"knowledge.documents: {exc}", file=sys.stderr)
        return None


def _options(path: str | None) -> VoxServeOptions | None:
    """The options file's options, or None with the reason printed."""
    try:
        return load_options(path)
    except OptionsError as exc:
        print(exc, file=sys.stderr)
        return None


def index_command(args: argparse.Namespace) -> int:
    """`voxserve index [DIR]`: build or update the knowledge index, then optionally search it."""
    if (options := _options(args.config)) is None:
        return 2
    if args.documents:
        options.knowledge.documents = args.documents
    if args.search:
        options.knowledge.search = args.search
    if not options.knowledge.documents:
        print("no documents: give a folder (voxserve index DIR) or set knowledge.documents in the "
              "options file", file=sys.stderr)
        return 2
    if (index := _index_knowledge(options)) is None:
        return 1
    try:
        k = options.knowledge
        hits = index.search(args.query, k.top_k, k.search) if args.query else []
        for n, hit in enumerate(hits, start=1):
            where = f"{hit.path}" + (f" / {hit.section}" if hit.section else "")
            print(f"{n}. {where} ({hit.score:.4f})")
            print(textwrap.fill(hit.text, width=100, initial_indent="   ",
                                subsequent_indent="   "))
    finally:
        index.close()
    return 0


def _deploy_with_progress(options: VoxServeOptions) -> None:
    from ray import serve

    from voxserve.deployments.app import build_graph

    failure: list[BaseException] = []

    def deploy() -> None:
        try:
            serve.run(build_graph(options), name="voxserve", route_prefix="/")
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=deploy, name="serve-run", daemon=True)
    thread.start()
    seen: dict[str, str] = {}
    while thread.is_alive():
        thread.join(timeout=1.0)
        try:
            app = serve.status().applications.get("voxserve")
        except Exception:
            continue
        for name, dep in (app.deployments.items() if app else []):
            status = str(dep.status.value if hasattr(dep.status, "value") else dep.status)
            if seen.get(name) != status:
                seen[name] = status
                _say(f"  {name:8s} {status} ({time.monotonic() - started:.0f} s)")
    if failure:
        raise RuntimeError(f"deploying the app failed: {failure[0]}") from failure[0]
    handles = {n: serve.get_deployment_handle(n, app_name="voxserve") for n in ("ASR", "LLM", "TTS")}
    for name, handle in handles.items():
        info = handle.info.remote().result(timeout_s=60)
        _say(f"  {name:8s} model {info['model']} loaded in {info['load_seconds']} s")


def _tracing_config(options: VoxServeOptions) -> Any:
    from ray.serve.schema import TracingConfig

    from voxserve.tracing import otlp_endpoint_configured, sampling_from_env

    t = options.tracing
    enabled = t.enabled if t.enabled is not None else otlp_endpoint_configured()
    ratio = sampling_from_env(t.sampling_ratio)
    if not enabled or ratio == 0.0:
        _say("tracing: off (set OTEL_EXPORTER_OTLP_ENDPOINT or tracing.enabled to turn it on)")
        return TracingConfig(enabled=False)
    path = "voxserve.tracing:otlp_exporter" if t.exporter == "otlp" else ""
    _say(f"tracing: {t.exporter} exporter, sampling ratio {ratio}")
    return TracingConfig(enabled=True, exporter_import_path=path, sampling_ratio=ratio)


def http_options(options: VoxServeOptions) -> dict[str, Any]:
    """Serve's proxy options: its `HTTPOptions` (Ray 2.60) takes `ssl_certfile`/`ssl_keyfile` and
    hands them to the proxy's uvicorn, which then serves HTTPS and wss:// on the same port."""
    server = options.server
    out: dict[str, Any] = {"host": server.host, "port": server.port}
    if server.ssl_certfile and server.ssl_keyfile:
        out.update(ssl_certfile=str(Path(server.ssl_certfile).resolve()),
                   ssl_keyfile=str(Path(server.ssl_keyfile).resolve()))
    return out


def serve_command(args: argparse.Namespace) -> int:
    if (options := _options(args.config)) is None:
        return 2
    options = with_environment_keys(options, os.environ)
    if args.host:
        options.server.host = args.host
    if args.port:
        options.server.port = args.port
    if (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        print("--ssl-certfile and --ssl-keyfile go together", file=sys.stderr)
        return 2
    if args.ssl_certfile:
        options.server.ssl_certfile, options.server.ssl_keyfile = args.ssl_certfile, args.ssl_keyfile
    if options.server.auth_required() and not options.server.api_keys:
        print(f"refusing to serve on {options.server.host} without API keys (set server.api_keys "
              f"in the options file or {API_KEYS_ENV}, or server.require_auth: false)",
              file=sys.stderr)
        return 2

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if options.server.proxy == "haproxy":
        if args.address:
            _say("server.proxy: haproxy only applies to a Ray this command starts; ignored")
        else:
            os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
    import ray
    from ray import serve

    _prepare_weights(options)
    if options.knowledge.documents:
        if (index := _index_knowledge(options)) is None:
            return 2
        index.close()
    started_ray = args.address is None
    _say("joining Ray at " + args.address if args.address else "starting a local Ray instance")
    init_kwargs: dict[str, Any] = {}
    if started_ray:
        init_kwargs["_metrics_export_port"] = options.server.metrics_port
    ray.init(address=args.address, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False, **init_kwargs)
    code = 0
    try:
        tracing = _tracing_config(options)
        serve.start(http_options=http_options(options), tracing_config=tracing)
        _say("deploying ASR, LLM, TTS and the WebSocket ingress")
        _deploy_with_progress(options)
        host, port = options.server.host, options.server.port
        ws, http = ("wss", "https") if options.server.ssl_certfile else ("ws", "http")
        _say(f"ready: {ws}://{host}:{port}/v1/realtime (OpenAI), "
             f"{ws}://{host}:{port}/voice-live/realtime (Voice Live), "
             f"health {http}://{host}:{port}/health")
        if started_ray:
            _say(f"metrics: http://127.0.0.1:{options.server.metrics_port}/metrics")
        while not stop.wait(0.5):
            pass
        _say("stopping")
    except Exception as exc:
        _say(f"error: {exc}")
        code = 1
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            if started_ray:
                _say("Ray stopped")
    return code


def talk_command(args: argparse.Namespace) -> int:
    from voxserve.client import read_wav, run_turn, write_wav

    audio = read_wav(args.wav)
    _say(f"streaming {args.wav} ({audio.size / 24000:.1f} s) in real time to {args.url}")
    result = asyncio.run(run_turn(args.url, audio, api_key=args.api_key, timeout_s=args.timeout))
    print(f"you said:   {result.user_transcript}")
    print(f"agent said: {result.answer_transcript}")
    print(f"response:   {result.status}")
    if result.ttfa_s is not None:
        print(f"time to first audio: {result.ttfa_s * 1000:.0f} ms after the end of your speech")
    for err in result.errors:
        print(f"error: {err.get('code')}: {err.get('message')}", file=sys.stderr)
    if args.out:
        write_wav(args.out, result.audio)
        print(f"reply written to {args.out} ({result.audio.size / 24000:.1f} s)")
    return 0 if result.status == "completed" else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the load benchmark has its own options (bench/main.py)
        from voxserve.bench.main import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="voxserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the server (Ray Serve app with the configured models)")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--config", help="options YAML (default: the built-in CPU configuration)")
    p.add_argument("--address", help="join an existing Ray cluster instead of starting one")
    p.add_argument("--ssl-certfile", help="TLS certificate (PEM): serve https:// and wss://")
    p.add_argument("--ssl-keyfile", help="TLS private key (PEM) for --ssl-certfile")
    p.set_defaults(func=serve_command)
    t = sub.add_parser("talk", help="speak a WAV recording to a running server")
    t.add_argument("wav", help="16-bit PCM WAV file")
    t.add_argument("--out", help="write the spoken reply to this WAV file")
    t.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime")
    t.add_argument("--api-key", default=os.environ.get("VOXSERVE_API_KEY"))
    t.add_argument("--timeout", type=float, default=120.0)
    t.set_defaults(func=talk_command)
    ix = sub.add_parser("index", help="index the knowledge documents (VoiceRAG) and search them")
    ix.add_argument("documents", nargs="?", help="folder of txt, md, html and pdf files "
                    "(default: knowledge.documents of the options)")
    ix.add_argument("--config", help="options YAML (where the index goes, how it searches)")
    ix.add_argument("--search", choices=["hybrid", "lexical", "semantic"], help="override knowledge.search")
    ix.add_argument("--query", help="after indexing, print the passages this finds")
    ix.set_defaults(func=index_command)
    sub.add_parser("bench", help="the TTFA load benchmark (voxserve bench --help)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
