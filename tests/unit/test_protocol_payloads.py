"""The typed `session.update` and `response.create` payloads: one set of validators for both,
per dialect, with the partial-merge and null-clearing rules of each field."""

from __future__ import annotations

import pytest

from tests.unit.refusals import refused
from voxserve.protocol import client_events as ce
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.items import ItemReference
from voxserve.protocol.response_overrides import ResponseOverrides, parse_response_overrides
from voxserve.protocol.session_config import (
    SessionConfig, ToolChoiceFunction, VoiceTable, apply_update, render_session,
)

pytestmark = pytest.mark.unit

VOICES = VoiceTable({"alloy": "heart", "en-US-AvaNeural": "heart"})
GA, BETA, VL = Dialect.GA, Dialect.BETA, Dialect.VOICE_LIVE
TOOL = {"type": "function", "name": "get_weather", "description": "weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}



# --- session.update ---------------------------------------------------------------------------


def test_absent_fields_stay_and_nulls_clear_in_the_flat_shape() -> None:
    cfg = apply_update(SessionConfig(), {"instructions": "be brief", "tools": [TOOL],
                                         "max_response_output_tokens": 200, "temperature": 1.1},
                       BETA, VOICES, False).config
    cfg = apply_update(cfg, {"voice": "alloy"}, BETA, VOICES, False).config
    assert cfg.instructions == "be brief" and cfg.tools[0].name == "get_weather"
    assert cfg.max_output_tokens == 200 and cfg.temperature == 1.1
    cfg = apply_update(cfg, {"instructions": None, "tools": None, "max_response_output_tokens": None,
                             "turn_detection": None, "input_audio_transcription": None},
                       BETA, VOICES, False).config
    assert (cfg.instructions, cfg.tools, cfg.max_output_tokens) == ("", [], "inf")
    assert cfg.turn_detection is None and cfg.transcription is None


def test_ga_sets_nested_output_and_refuses_unknown_fields_at_every_level() -> None:
    cfg = apply_update(SessionConfig(), {
        "type": "realtime", "output_modalities": ["text"], "tool_choice": {"type": "function",
                                                                           "name": "f"},
        "tracing": "auto",  # accepted and ignored
        "audio": {"output": {"voice": {"id": "en-US-AvaNeural"}, "speed": 1.25,
                             "format": {"type": "audio/pcma"}}}}, GA, VOICES, False).config
    assert cfg.audio_output is False and cfg.voice == "en-US-AvaNeural" and cfg.speed == 1.25
    assert cfg.output_format.encoding == "g711_alaw"
    assert isinstance(cfg.tool_choice, ToolChoiceFunction) and cfg.tool_choice.name == "f"
    for raw, param in [({"modalities": ["text"]}, "session.modalities"),
                       ({"audio": {"output": {"rate": 1}}}, "session.audio.output.rate"),
                       ({"audio": {"input": {"transcription": {"x": 1}}}},
                        "session.audio.input.transcription.x")]:
        err = refused(apply_update, SessionConfig(), raw, GA, VOICES, False)
        assert (err.code, err.param) == ("unknown_parameter", param)


@pytest.mark.parametrize(("dialect", "raw", "code", "param"), [
    (GA, {"type": "conversation"}, "invalid_value", "session.type"),
    (GA, {"output_modalities": ["text", "audio"]}, "invalid_value", "session.output_modalities"),
    (GA, {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "invalid_value",
     "session.audio.input.format.rate"),
    (GA, {"audio": 5}, "invalid_type", "session.audio"),
    (GA, {"audio": {"output": {"speed": 3}}}, "invalid_value", "session.audio.output.speed"),
    (BETA, {"modalities": ["audio"]}, "invalid_value", "session.modalities"),
    (BETA, {"modalities": ["text", "avatar"]}, "invalid_value", "session.modalities"),
    (BETA, {"voice": {"name": "alloy"}}, "invalid_type", "session.voice"),
    (BETA, {"temperature": "1"}, "invalid_type", "session.temperature"),
    (BETA, {"temperature": 2.5}, "invalid_value", "session.temperature"),
    (BETA, {"max_response_output_tokens": True}, "invalid_type", "session.max_response_output_tokens"),
    (BETA, {"tool_choice": None}, "invalid_value", "session.tool_choice"),
    (BETA, {"tool_choice": {"type": "function"}}, "missing_required_parameter",
     "session.tool_choice.name"),
    (BETA, {"tools": [TOOL, TOOL]}, "invalid_value", "session.tools"),
    (BETA, {"tools": [{"name": "two words"}]}, "invalid_value", "session.tools[0].name"),
    (BETA, {"turn_detection": {"type": "azure_semantic_vad"}}, "invalid_value",
     "session.turn_detection.type"),
    (BETA, {"input_audio_sampling_rate": 16000}, "unknown_parameter",
     "session.input_audio_sampling_rate"),
    (BETA, {"voxserve": {"response_timing": "yes"}}, "invalid_type",
     "session.voxserve.response_timing"),
    (BETA, {"voxserve": {"other": True}}, "unknown_parameter", "session.voxserve.other"),
    (VL, {"voice": {"type": "azure-standard"}}, "missing_required_parameter", "session.voice.name"),
    (VL, {"turn_detection": {"type": "semantic_vad"}}, "invalid_value", "session.turn_detection.type"),
    (VL, {"input_audio_sampling_rate": 44100}, "invalid_value", "session.input_audio_sampling_rate"),
    (VL, {"input_audio_format": "g711_ulaw", "input_audio_sampling_rate": 16000}, "invalid_value",
     "session.input_audio_sampling_rate"),
    (VL, {"output_audio_format": "mp3"}, "invalid_value", "session.output_audio_format"),
])
def test_update_errors_carry_code_and_param(dialect: Dialect, raw: dict[str, object], code: str,
                                            param: str) -> None:
    err = refused(apply_update, SessionConfig(), raw, dialect, VOICES, False)
    assert (err.code, err.param) == (code, param)


def test_voice_live_modalities_formats_and_ignored_fields() -> None:
    result = apply_update(SessionConfig(), {
        "modalities": ["text", "audio", "avatar"], "output_audio_format": "pcm16_16000hz",
        "input_audio_format": "g711_ulaw", "input_audio_sampling_rate": 8000,
        "animation": None,  # unsupported but unset: no warning
        "reasoning_effort": "low", "metadata": {"k": "v"}}, VL, VOICES, False)
    cfg = result.config
    assert cfg.audio_output and cfg.output_format.rate == 16000
    assert (cfg.input_format.encoding, cfg.input_format.rate) == ("g711_ulaw", 8000)
    assert result.warnings == [("'reasoning_effort' has no effect: the served model does not "
                                "reason; it was ignored", "session.reasoning_effort")]
    rendered = render_session(cfg, VL, "s", 1)
    assert rendered["output_audio_format"] == "pcm16_16000hz"
    assert rendered["input_audio_sampling_rate"] == 8000


def test_voice_live_unknown_fields_never_reach_the_config() -> None:
    """Extras named like config fields stay extras: warned about, not merged unvalidated."""
    result = apply_update(SessionConfig(), {"speed": "fast", "voice_raw": 5, "audio_output": 1},
                          VL, VOICES, False)
    assert result.config.model_dump() == SessionConfig().model_dump()
    assert {p for _, p in result.warnings} == {"session.speed", "session.voice_raw",
                                               "session.audio_output"}


def test_sampling_rate_applies_to_the_current_format() -> None:
    cfg = apply_update(SessionConfig(), {"input_audio_format": "g711_alaw"}, VL, VOICES, False).config
    err = refused(apply_update, cfg, {"input_audio_sampling_rate": 24000}, VL, VOICES, False)
    assert err.param == "session.input_audio_sampling_rate"
    cfg = apply_update(SessionConfig(), {"input_audio_sampling_rate": 16000}, VL, VOICES, False).config
    assert (cfg.input_format.encoding, cfg.input_format.rate) == ("pcm16", 16000)


def test_the_same_voice_may_be_resent_after_audio() -> None:
    cfg = apply_update(SessionConfig(), {"audio": {"output": {"voice": "alloy"}}}, GA, VOICES,
                       audio_started=True).config
    assert cfg.voice == "alloy"
    err = refused(apply_update, cfg, {"audio": {"output": {"voice": "en-US-AvaNeural"}}}, GA,
                  VOICES, True)
    assert err.param == "session.audio.output.voice" and "cannot change" in err.message


# --- response.create --------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", list(Dialect))
def test_no_response_object_overrides_nothing(dialect: Dialect) -> None:
    o = parse_response_overrides(None, dialect, VOICES)
    assert o == ResponseOverrides(cancel_previous=dialect is VL)
    assert parse_response_overrides({}, dialect, VOICES) == o


def test_ga_overrides() -> None:
    o = parse_response_overrides({
        "output_modalities": ["text"], "conversation": "none", "instructions": "one word",
        "audio": {"output": {"voice": "en-US-AvaNeural"}}, "tools": [TOOL], "tool_choice": "required",
        "max_output_tokens": 64, "temperature": 1.5, "metadata": {"probe": "1"},
        "cancel_previous": False, "unknown": 1,
    }, GA, VOICES, additional_instructions="Voice Live only")
    assert o.audio_output is False and o.in_conversation is False and o.voice == "en-US-AvaNeural"
    assert o.instructions == "one word" and o.tools is not None and o.tools[0].name == "get_weather"
    assert o.tool_choice == "required" and o.max_output_tokens == 64 and o.metadata == {"probe": "1"}
    # GA has no per-response temperature, no additional_instructions and no cancel_previous
    assert o.temperature is None and o.additional_instructions is None and not o.cancel_previous


def test_flat_overrides_and_nulls() -> None:
    o = parse_response_overrides({"modalities": ["text", "audio"], "voice": "alloy",
                                  "temperature": 0, "max_response_output_tokens": "inf",
                                  "conversation": "auto"}, BETA, VOICES)
    assert (o.audio_output, o.voice, o.temperature, o.max_output_tokens) == (True, "alloy", 0.0, "inf")
    assert o.in_conversation
    o = parse_response_overrides({"voice": None, "instructions": None, "tools": None,
                                  "max_output_tokens": None, "metadata": None}, BETA, VOICES)
    # null voice / instructions / metadata: the session's; null tools: none; null limit: none
    assert (o.voice, o.instructions, o.metadata) == (None, None, None)
    assert o.tools == [] and o.max_output_tokens == "inf"
    o = parse_response_overrides({"max_output_tokens": 10, "max_response_output_tokens": 20}, BETA,
                                 VOICES)
    assert o.max_output_tokens == 20


def test_voice_live_overrides() -> None:
    o = parse_response_overrides({"voice": {"type": "azure-standard", "name": "en-US-AvaNeural"},
                                  "modalities": ["text", "animation"]}, VL, VOICES,
                                 additional_instructions="Answer in French.")
    assert o.voice == "en-US-AvaNeural" and o.audio_output is False
    assert o.additional_instructions == "Answer in French." and o.cancel_previous
    o = parse_response_overrides({"cancel_previous": False}, VL, VOICES, additional_instructions="")
    assert not o.cancel_previous and o.additional_instructions is None
    assert parse_response_overrides({"cancel_previous": None}, VL, VOICES).cancel_previous


def test_input_items_and_references() -> None:
    o = parse_response_overrides({"input": [
        {"type": "item_reference", "id": "item_1"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    ]}, GA, VOICES)
    assert o.input is not None and o.input[0] == ItemReference(type="item_reference", id="item_1")
    assert o.input[1].type == "message"
    o = parse_response_overrides({"input_items": []}, BETA, VOICES)
    assert o.input == []


@pytest.mark.parametrize(("dialect", "raw", "code", "param"), [
    (GA, {"output_modalities": ["text", "audio"]}, "invalid_value", "response.output_modalities"),
    (GA, {"audio": {"output": {"voice": "nobody"}}}, "invalid_value", "response.audio.output.voice"),
    (GA, {"audio": "x"}, "invalid_type", "response.audio"),
    (GA, {"instructions": 5}, "invalid_type", "response.instructions"),
    (GA, {"tools": {}}, "invalid_type", "response.tools"),
    (GA, {"tool_choice": "sometimes"}, "invalid_value", "response.tool_choice"),
    (GA, {"max_output_tokens": 0}, "invalid_value", "response.max_output_tokens"),
    (GA, {"input": None}, "invalid_type", "response.input"),
    (GA, {"input": [{"type": "item_reference"}]}, "missing_required_parameter", "response.input[0].id"),
    (GA, {"input_items": [{"type": "message", "role": "user"}]}, "missing_required_parameter",
     "response.input_items[0].content"),
    (GA, {"input": [{"type": "message", "role": "system",
                     "content": [{"type": "input_audio", "audio": "AAAA"}]}]}, "invalid_value",
     "response.input[0].content[0].type"),
    (GA, {"metadata": {"k": 1}}, "invalid_type", "response.metadata.k"),
    (GA, {"metadata": {str(i): "v" for i in range(17)}}, "invalid_value", "response.metadata"),
    (GA, {"conversation": 3}, "invalid_type", "response.conversation"),
    # the flat check no longer lets unknown modality strings through (it is session.update's)
    (BETA, {"modalities": ["text", "smell"]}, "invalid_value", "response.modalities"),
    (BETA, {"modalities": ["audio"]}, "invalid_value", "response.modalities"),
    (BETA, {"voice": "nobody"}, "invalid_value", "response.voice"),
    (BETA, {"voice": {"name": "alloy"}}, "invalid_type", "response.voice"),
    (BETA, {"temperature": 3}, "invalid_value", "response.temperature"),
    (BETA, {"temperature": True}, "invalid_type", "response.temperature"),
    (VL, {"voice": {"type": "azure-standard"}}, "missing_required_parameter", "response.voice.name"),
    (VL, {"cancel_previous": "no"}, "invalid_type", "response.cancel_previous"),
])
def test_response_errors_carry_code_and_param(dialect: Dialect, raw: dict[str, object], code: str,
                                              param: str) -> None:
    err = refused(parse_response_overrides, raw, dialect, VOICES)
    assert (err.code, err.param) == (code, param)


# --- client events ----------------------------------------------------------------------------


def test_voice_live_events_are_marked_on_their_classes() -> None:
    assert ce.InputAudioTurnStartEvent.voice_live_only and not ce.ResponseCreateEvent.voice_live_only
    assert ce.VOICE_LIVE_ONLY == {"input_audio.turn.start", "input_audio.turn.append",
                                  "input_audio.turn.end", "input_audio.turn.cancel",
                                  "input_audio.clear"}
    event = ce.parse_client_event('{"type": "input_audio.turn.start", "turn_id": "t1"}')
    assert type(event).voice_live_only
