"""session.update outcomes field by field: implemented fields apply, known unimplemented ones are
accepted with a notice, a malformed one is refused alone (docs/protocol.md, "Field outcomes")."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.unit.fakes import start_session, stop_session
from tests.unit.refusals import refused
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.session_config import SessionConfig, VoiceTable, apply_update, render_session

pytestmark = pytest.mark.unit

GA, BETA, VL = Dialect.GA, Dialect.BETA, Dialect.VOICE_LIVE
VOICES = VoiceTable({"alloy": "heart", "en-US-AvaNeural": "heart"}, default="alloy", strict=False)
STRICT = VoiceTable({"alloy": "heart"}, default="alloy", strict=True)
TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}

# What a Voice Live app's first update typically holds (Azure's how-to and the SDK samples).
VOICE_LIVE_FIRST_UPDATE: dict[str, Any] = {
    "modalities": ["text", "audio"],
    "instructions": "You are a helpful agent for a bank.",
    "voice": {"name": "es-MX-DaliaNeural", "type": "azure-standard", "temperature": 0.8,
              "rate": "+10%"},
    "input_audio_sampling_rate": 24000,
    "input_audio_noise_reduction": {"type": "azure_deep_noise_suppression"},
    "input_audio_echo_cancellation": {"type": "server_echo_cancellation"},
    "input_audio_transcription": {"model": "azure-speech", "language": "es-MX"},
    "turn_detection": {"type": "azure_semantic_vad", "threshold": 0.3, "prefix_padding_ms": 200,
                       "silence_duration_ms": 200, "remove_filler_words": False,
                       "end_of_utterance_detection": {"model": "semantic_detection_v1",
                                                      "threshold": 0.01, "timeout": 2}},
    "tools": [TOOL], "tool_choice": "auto",
}


def test_a_voice_live_first_update_keeps_all_it_can_and_warns_about_the_rest() -> None:
    # noise suppression and echo cancellation take effect (voxserve/audio/front_end.py)
    result = apply_update(SessionConfig(), VOICE_LIVE_FIRST_UPDATE, VL, VOICES, False)
    assert result.errors == [] and result.applied
    cfg = result.config
    assert cfg.instructions.startswith("You are a helpful agent")
    assert [t.name for t in cfg.tools] == ["get_weather"]
    assert cfg.turn_detection is not None and cfg.turn_detection.type == "azure_semantic_vad"
    eou = cfg.turn_detection.end_of_utterance_detection
    # Azure's how-to shape (threshold, timeout in seconds) maps onto the SDK's
    assert eou is not None and (eou.threshold_level, eou.timeout_ms) == ("low", 2000)
    assert cfg.transcription is not None and cfg.transcription.language is not None
    assert cfg.voice == "alloy" and cfg.speed == pytest.approx(1.1)  # fallback voice, its rate
    assert cfg.noise_reduction == "azure_deep_noise_suppression"
    assert cfg.echo_cancellation is not None and cfg.echo_cancellation.reference_source == "server"
    params = {p for _, p in result.warnings}
    assert params == {"session.voice", "session.voice.temperature"}
    assert any("es-MX-DaliaNeural" in m for m, _ in result.warnings)


def test_livekit_beta_first_update_with_null_noise_reduction_applies_whole() -> None:
    # livekit-plugins-openai sends this null in every first beta update
    raw = {"instructions": "be brief", "voice": "alloy", "input_audio_format": "pcm16",
           "input_audio_noise_reduction": None, "turn_detection": {"type": "server_vad"},
           "speed": 1.2, "tracing": None, "tool_choice": "auto", "temperature": 0.8}
    result = apply_update(SessionConfig(), raw, BETA, VOICES, False)
    assert result.errors == [] and result.warnings == []
    assert result.config.instructions == "be brief" and result.config.speed == 1.2


def test_a_malformed_field_is_dropped_alone_and_named() -> None:
    result = apply_update(SessionConfig(), {"instructions": "new", "input_audio_format": "mp3",
                                            "voice": "en-US-AvaNeural"}, BETA, VOICES, False)
    assert [e.param for e in result.errors] == ["session.input_audio_format"]
    assert result.config.instructions == "new" and result.config.voice == "en-US-AvaNeural"
    assert result.config.input_format == SessionConfig().input_format
    # inside a section: only the bad leaf goes, its siblings apply
    result = apply_update(SessionConfig(), {"type": "realtime", "audio": {"input": {
        "format": {"type": "audio/mp3"}, "turn_detection": None}}}, GA, VOICES, False)
    assert [e.param for e in result.errors] == ["session.audio.input.format.type"]
    assert result.config.turn_detection is None
    # several bad fields: each named, the good one applies
    result = apply_update(SessionConfig(), {"temperature": 9, "modalities": ["video"],
                                            "instructions": "kept"}, BETA, VOICES, False)
    assert {e.param for e in result.errors} == {"session.temperature", "session.modalities"}
    assert result.config.instructions == "kept"


def test_an_update_with_nothing_valid_changes_nothing() -> None:
    result = apply_update(SessionConfig(instructions="old"), {"temperature": "hot"}, BETA,
                          VOICES, False)
    assert not result.applied and result.config.instructions == "old"


def test_ga_known_fields_without_effect_are_accepted_and_the_echo_shows_the_effective_value() -> None:
    raw = {"type": "realtime", "instructions": "hi", "tracing": "auto",
           "reasoning": {"effort": "low"},
           "audio": {"input": {"noise_reduction": {"type": "near_field"}}}}
    result = apply_update(SessionConfig(), raw, GA, VOICES, False)
    assert result.errors == [] and result.config.instructions == "hi"
    assert {p for _, p in result.warnings} == {"session.tracing", "session.reasoning"}
    echo = render_session(result.config, GA, "s", 1)
    assert echo["audio"]["input"]["noise_reduction"] == {"type": "near_field"}  # in effect
    off = apply_update(result.config, {"type": "realtime", "audio": {"input": {
        "noise_reduction": None}}}, GA, VOICES, False).config
    assert render_session(off, GA, "s", 1)["audio"]["input"]["noise_reduction"] is None


def test_noise_and_echo_settings_are_checked_and_errors_name_the_parameter() -> None:
    cases = [
        (GA, {"type": "realtime", "audio": {"input": {"noise_reduction": {
            "type": "azure_deep_noise_suppression"}}}},
         "session.audio.input.noise_reduction.type"),
        (BETA, {"input_audio_noise_reduction": {"type": "loud"}},
         "session.input_audio_noise_reduction.type"),
        (VL, {"input_audio_noise_reduction": {"type": "near_field", "strength": 2}},
         "session.input_audio_noise_reduction.strength"),
        (VL, {"input_audio_echo_cancellation": {"type": "acoustic"}},
         "session.input_audio_echo_cancellation.type"),
        (VL, {"input_audio_echo_cancellation": {"type": "server_echo_cancellation",
                                                "channels": 2}},
         "session.input_audio_echo_cancellation.channels"),
        (VL, {"input_audio_echo_cancellation": {"type": "server_echo_cancellation",
                                                "reference_source": "client"}},
         "session.input_audio_echo_cancellation.reference_source"),
        (VL, {"input_audio_format": "g711_ulaw", "input_audio_echo_cancellation": {
            "type": "server_echo_cancellation", "reference_source": "client", "channels": 2}},
         "session.input_audio_echo_cancellation"),
    ]
    for dialect, raw, param in cases:
        err = refused(apply_update, SessionConfig(), raw, dialect, VOICES, False)
        assert err.param == param, (raw, err.param, err.message)
    stereo = apply_update(SessionConfig(), {"input_audio_echo_cancellation": {
        "type": "server_echo_cancellation", "reference_source": "client", "channels": 2}},
        VL, VOICES, False).config
    echo = render_session(stereo, VL, "s", 1)["input_audio_echo_cancellation"]
    assert echo == {"type": "server_echo_cancellation", "reference_source": "client",
                    "channels": 2}
    # a G.711 format later is refused while the stereo reference is on
    err = refused(apply_update, stereo, {"input_audio_format": "g711_alaw"}, VL, VOICES, False)
    assert err.param == "session.input_audio_format"


def test_ga_stored_prompts_are_refused_alone() -> None:
    err = refused(apply_update, SessionConfig(), {"type": "realtime", "instructions": "x",
                                                  "prompt": {"id": "pmpt_123"}}, GA, VOICES, False)
    assert err.param == "session.prompt" and "instructions" in err.message
    assert apply_update(SessionConfig(), {"prompt": None}, GA, VOICES, False).errors == []


def test_unknown_voices_fall_back_unless_strict() -> None:
    result = apply_update(SessionConfig(), {"voice": "fr-FR-DeniseNeural"}, BETA, VOICES, False)
    assert result.config.voice == "alloy"
    assert result.warnings == [(VOICES.fallback_notice("fr-FR-DeniseNeural"), "session.voice")]
    err = refused(apply_update, SessionConfig(), {"voice": "fr-FR-DeniseNeural"}, BETA, STRICT,
                  False)
    assert err.code == "invalid_value" and err.param == "session.voice"


def test_voice_live_prosody_rate_sets_the_speed() -> None:
    for rate, speed in (("1.2", 1.2), ("-20%", 0.8), ("fast", 1.25), ("x-slow", 0.5)):
        cfg = apply_update(SessionConfig(), {"voice": {"name": "alloy", "type": "azure-standard",
                                                       "rate": rate}}, VL, VOICES, False).config
        assert cfg.speed == pytest.approx(speed), rate
    err = refused(apply_update, SessionConfig(), {"voice": {"name": "alloy", "rate": "warp"}},
                  VL, VOICES, False)
    assert err.param == "session.voice.rate"


def test_voice_live_agent_mode_is_refused_clearly() -> None:
    err = refused(apply_update, SessionConfig(), {"agent": {"name": "my-agent"},
                                                  "instructions": "x"}, VL, VOICES, False)
    assert err.param == "session.agent" and "agent mode" in err.message


async def test_the_session_sends_each_refusal_then_the_update_it_applied() -> None:
    session, tr, _, task = await start_session(GA)
    tr.push({"type": "session.update", "event_id": "u1", "session": {
        "type": "realtime", "instructions": "applied", "temperature": 0.5,
        "audio": {"input": {"noise_reduction": {"type": "far_field"}}}}})
    updated = await tr.wait_for("session.updated")
    err = next(e for e in tr.sent if e["type"] == "error")
    # GA has no session temperature: refused alone, with the event's id
    assert err["error"]["param"] == "session.temperature" and err["error"]["event_id"] == "u1"
    assert updated["session"]["instructions"] == "applied"
    assert "warning" not in tr.types()  # OpenAI clients do not know the event
    await stop_session(tr, task, GA)


async def test_voice_live_gets_a_warning_per_ignored_field() -> None:
    session, tr, _, task = await start_session(VL)
    tr.push({"type": "session.update", "session": VOICE_LIVE_FIRST_UPDATE})
    await tr.wait_for("session.updated")
    warned = {e["warning"]["param"] for e in tr.sent if e["type"] == "warning"}
    assert "session.voice" in warned and "session.input_audio_echo_cancellation" not in warned
    assert session.listener.front_end.chain == "aec+azure_deep_noise_suppression"
    assert session.responder.playback.reference is not None  # the server's output is the far end
    assert "error" not in tr.types()
    await stop_session(tr, task)


async def test_an_unconfigured_transcription_model_is_served_by_the_default_with_a_warning() -> None:
    session, tr, _, task = await start_session(VL, transcription_models=["whisper-1",
                                                                         "azure-speech"])
    for model in ("azure-speech", "contoso-custom-asr"):
        tr.push({"type": "session.update",
                 "session": {"input_audio_transcription": {"model": model}}})
    await tr.wait_for("session.updated", count=2)
    warned = [e["warning"] for e in tr.sent if e["type"] == "warning"]
    assert [w["param"] for w in warned] == ["session.input_audio_transcription.model"]
    assert "contoso-custom-asr" in warned[0]["message"]
    assert session.config.transcription is not None
    await stop_session(tr, task)


def test_ga_truncation_is_kept_and_echoed() -> None:
    raw = {"type": "realtime", "truncation": {"type": "retention_ratio", "retention_ratio": 0.5,
                                              "token_limits": {"post_instructions": 1000}}}
    result = apply_update(SessionConfig(), raw, GA, VOICES, False)
    assert result.errors == [] and result.warnings == []
    t = result.config.truncation
    assert (t.type, t.retention_ratio, t.post_instructions_tokens) == ("retention_ratio", 0.5, 1000)
    assert render_session(result.config, GA, "s", 1)["truncation"] == raw["truncation"]
    cfg = apply_update(result.config, {"truncation": "disabled"}, GA, VOICES, False).config
    assert cfg.truncation.type == "disabled"
    for bad, param in (({"type": "retention_ratio"}, "session.truncation.retention_ratio"),
                       ({"type": "retention_ratio", "retention_ratio": 1.5}, "session.truncation"),
                       ("sometimes", "session.truncation")):
        err = refused(apply_update, SessionConfig(), {"truncation": bad}, GA, VOICES, False)
        assert err.param is not None and err.param.startswith(param), (bad, err.param)


async def test_voice_live_volume_scales_the_spoken_audio() -> None:
    import base64

    import numpy as np

    levels = {}
    for volume in ("100", "50"):
        session, tr, _, task = await start_session(VL)
        tr.push({"type": "session.update", "session": {
            "turn_detection": None, "voice": {"name": "alloy", "type": "azure-standard",
                                              "volume": volume}}})
        await tr.wait_for("session.updated")
        tr.push({"type": "response.create"})
        await tr.wait_for("response.done")
        pcm = b"".join(base64.b64decode(e["delta"]) for e in tr.sent
                       if e["type"] == "response.audio.delta")
        samples = np.frombuffer(pcm, "<i2").astype(np.float32)
        levels[volume] = float(np.sqrt(np.mean(samples ** 2)))
        await stop_session(tr, task)
    assert levels["50"] / levels["100"] == pytest.approx(0.5, rel=0.02)


async def test_the_session_truncation_reaches_the_llm_request() -> None:
    session, tr, pipe, task = await start_session(GA)
    tr.push({"type": "session.update", "session": {"type": "realtime", "truncation": {
        "type": "retention_ratio", "retention_ratio": 0.25,
        "token_limits": {"post_instructions": 2000}}}})
    await tr.wait_for("session.updated")
    tr.push({"type": "response.create"})
    await tr.wait_for("response.done")
    t = pipe.requests[0].truncation
    assert (t.mode, t.retention_ratio, t.post_instructions_tokens) == ("auto", 0.25, 2000)
    await stop_session(tr, task)


def test_settings_without_effect_inside_transcription_and_voice_are_warned_about() -> None:
    result = apply_update(SessionConfig(), {
        "input_audio_transcription": {"model": "azure-speech", "language": "en-US",
                                      "custom_speech": {"en-US": "my-endpoint-id"}},
        "voice": {"name": "alloy", "type": "azure-standard", "pitch": "+5%", "volume": "loud",
                  "rate": "1.1"}}, VL, VOICES, False)
    assert result.errors == []
    assert {p for _, p in result.warnings} == {"session.input_audio_transcription.custom_speech",
                                               "session.voice.pitch"}
    assert result.config.speed == pytest.approx(1.1) and result.config.volume == 1.4
    assert result.config.transcription is not None
    assert result.config.transcription.custom_speech is None  # the echo shows what is in effect
    ga = apply_update(SessionConfig(), {"type": "realtime", "audio": {"input": {"transcription": {
        "model": "gpt-realtime-whisper", "delay": "low"}}}}, GA, VOICES, False)
    assert [p for _, p in ga.warnings] == ["session.audio.input.transcription.delay"]


def test_voice_live_extensions_are_unknown_parameters_in_the_openai_dialects() -> None:
    err = refused(apply_update, SessionConfig(), {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "remove_filler_words": True}}}}, GA, VOICES,
        False)
    assert (err.code, err.param) == ("unknown_parameter",
                                     "session.audio.input.turn_detection.remove_filler_words")
    err = refused(apply_update, SessionConfig(), {"turn_detection": {
        "type": "server_vad", "end_of_utterance_detection": {"timeout_ms": 500}}}, BETA, VOICES,
        False)
    assert err.param == "session.turn_detection.end_of_utterance_detection"
    ok = apply_update(SessionConfig(), {"turn_detection": {
        "type": "server_vad", "remove_filler_words": True}}, VL, VOICES, False)
    assert ok.errors == [] and ok.config.turn_detection is not None


def test_a_voice_object_of_an_unknown_kind_is_refused() -> None:
    err = refused(apply_update, SessionConfig(), {"voice": {"name": "alloy", "type": "bogus"}},
                  VL, VOICES, False)
    assert err.param == "session.voice.type"


def test_stored_prompts_are_refused_in_responses_too() -> None:
    from voxserve.protocol.response_overrides import parse_response_overrides

    err = refused(parse_response_overrides, {"prompt": {"id": "pmpt_1"}}, GA, VOICES)
    assert err.param == "response.prompt"
    assert parse_response_overrides({"prompt": None}, GA, VOICES).notices == ()


@pytest.mark.parametrize("dialect", [GA, BETA, VL], ids=["ga", "beta", "voice_live"])
async def test_include_logprobs_puts_word_log_probabilities_on_the_transcript(
        dialect: Dialect) -> None:
    from tests.unit.fakes import append_event, silence_pcm16, tone_pcm16

    session, tr, pipe, task = await start_session(dialect)
    include = ["item.input_audio_transcription.logprobs"]
    tr.push({"type": "session.update", "session": {"type": "realtime", "include": include,
                                                   "audio": {"input": {"transcription": {
                                                       "model": "whisper-1"}}}}
             if dialect is GA else {"include": include,
                                    "input_audio_transcription": {"model": "whisper-1"}}})
    updated = await tr.wait_for("session.updated")
    assert updated["session"]["include"] == include
    tr.push(append_event(silence_pcm16(0.5) + tone_pcm16(1.0) + silence_pcm16(0.8)))
    done = await tr.wait_for("conversation.item.input_audio_transcription.completed")
    assert [p["token"] for p in done["logprobs"]] == pipe.transcript.split()
    assert all(p["logprob"] == pytest.approx(math.log(0.9)) for p in done["logprobs"])
    assert "error" not in tr.types()
    await stop_session(tr, task, dialect)


def test_voice_live_phrases_are_warned_and_unknown_include_values_refused() -> None:
    result = apply_update(SessionConfig(), {"include": [
        "item.input_audio_transcription.phrases"]}, VL, VOICES, False)
    assert [p for _, p in result.warnings] == ["session.include"]
    assert not result.config.transcription_logprobs
    err = refused(apply_update, SessionConfig(), {"include": ["item.audio"]}, BETA, VOICES, False)
    assert err.param == "session.include"


GA_SAMPLE: dict[str, Any] = {
    "type": "realtime", "instructions": "Be brief.", "output_modalities": ["audio"],
    "tools": [TOOL], "tool_choice": "auto", "max_output_tokens": 300, "truncation": "auto",
    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                        "transcription": {"model": "whisper-1", "language": "en"},
                        "turn_detection": {"type": "server_vad", "silence_duration_ms": 400}},
              "output": {"voice": "alloy", "speed": 1.1}},
}
BETA_SAMPLE: dict[str, Any] = {
    "instructions": "Be brief.", "modalities": ["text", "audio"], "voice": "alloy",
    "input_audio_format": "pcm16", "output_audio_format": "pcm16", "speed": 1.1,
    "input_audio_transcription": {"model": "whisper-1"}, "temperature": 0.7,
    "turn_detection": {"type": "semantic_vad", "eagerness": "low"}, "tools": [TOOL],
    "max_response_output_tokens": 200,
}
BAD_VALUES: list[Any] = [7, -1, 1e308, "x" * 300, True, [], {}, [1, 2], {"type": "bogus"}]


def _leaves(payload: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in payload.items():
        if isinstance(value, dict) and key in ("audio", "input", "output"):
            out += _leaves(value, (*prefix, key))
        else:
            out.append((*prefix, key))
    return out


def _set(payload: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = dict(payload)
    if len(path) == 1:
        if value is _DROP:
            out.pop(path[0])
        else:
            out[path[0]] = value
    else:
        out[path[0]] = _set(out[path[0]], path[1:], value)
    return out


_DROP = object()


@pytest.mark.parametrize(("dialect", "sample"), [(GA, GA_SAMPLE), (BETA, BETA_SAMPLE),
                                                 (VL, VOICE_LIVE_FIRST_UPDATE)],
                         ids=["ga", "beta", "voice_live"])
def test_any_one_bad_field_costs_only_itself(dialect: Dialect, sample: dict[str, Any]) -> None:
    """Every field of a real first update, replaced in turn by each of several malformed
    values: either the value is acceptable, or exactly that field is refused by name and the
    session ends up exactly as if the field had not been sent."""
    assert apply_update(SessionConfig(), sample, dialect, VOICES, False).errors == []
    refusals = 0
    for path in _leaves(sample):
        without = apply_update(SessionConfig(), _set(sample, path, _DROP), dialect, VOICES, False)
        for bad in BAD_VALUES:
            result = apply_update(SessionConfig(), _set(sample, path, bad), dialect, VOICES, False)
            if not result.errors:
                continue
            refusals += 1
            field = "session." + ".".join(path)
            assert all(e.param is not None and e.param.startswith(field) for e in result.errors), \
                (path, bad, [e.param for e in result.errors])
            assert result.config == without.config, (path, bad)
    assert refusals > 2 * len(_leaves(sample))  # most bad values are refused
