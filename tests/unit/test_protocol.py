"""The protocol package alone: every server event in every dialect against the SDK models,
client event parsing of odd shapes, and session.update merging in both session shapes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.conformance import check_event
from tests.unit.refusals import refused
from voxserve.protocol import server_events as se
from voxserve.protocol.client_events import ParsedError, parse_client_event
from voxserve.protocol.dialects import Dialect, pick_dialect
from voxserve.protocol.errors import ProtocolError
from voxserve.protocol.items import ContentPart, Item, parse_client_item
from voxserve.protocol.session_config import (
    InputTranscription, SessionConfig, VoiceTable, apply_update, render_session,
)

pytestmark = pytest.mark.unit

VOICES = VoiceTable({"alloy": "heart", "en-US-AvaNeural": "heart"})
USER = Item(id="item_u", type="message", role="user",
            content=[ContentPart(type="input_audio", transcript=None)])
ASSISTANT = Item(id="item_a", type="message", role="assistant", status="incomplete",
                 content=[ContentPart(type="audio", transcript="Hi")])
TEXT_ASSISTANT = Item(id="item_t", type="message", role="assistant",
                      content=[ContentPart(type="text", text="Hi")])
CALL = Item(id="item_f", type="function_call", call_id="call_1", name="get_weather",
            arguments='{"city":"Oslo"}')
OUTPUT = Item(id="item_o", type="function_call_output", call_id="call_1", output='{"t":21}')
PART = {"response_id": "resp_1", "item_id": "item_a", "output_index": 0, "content_index": 0}
ERR = se.ErrorDetail(type="invalid_request_error", code="invalid_value", message="m", param="p")

EVENTS: list[se.ServerEvent] = [
    se.SessionCreatedEvent(session_id="s", expires_at=1900000000,
                           config=SessionConfig(transcription=InputTranscription())),
    se.SessionUpdatedEvent(session_id="s", expires_at=1900000000,
                           config=SessionConfig(turn_detection=None, audio_output=False)),
    se.ErrorEvent(error=ERR), se.WarningEvent(warning=se.WarningDetail(message="w")),
    se.SpeechStartedEvent(audio_start_ms=100, item_id="item_u"),
    se.SpeechStoppedEvent(audio_end_ms=900, item_id="item_u"),
    se.CommittedEvent(previous_item_id=None, item_id="item_u"), se.ClearedEvent(),
    *[se.ItemAddedEvent(previous_item_id="x", item=i) for i in (USER, ASSISTANT, TEXT_ASSISTANT, CALL, OUTPUT)],
    se.ItemDoneEvent(previous_item_id=None, item=ASSISTANT), se.ItemDeletedEvent(item_id="item_u"),
    se.ItemRetrievedEvent(item=USER),
    se.ItemTruncatedEvent(item_id="item_a", content_index=0, audio_end_ms=300),
    se.TranscriptionDeltaEvent(item_id="item_u", content_index=0, delta="he"),
    se.TranscriptionCompletedEvent(item_id="item_u", content_index=0, transcript="hello",
                                   audio_seconds=1.2),
    se.TranscriptionFailedEvent(item_id="item_u", content_index=0, error=ERR),
    se.ResponseCreatedEvent(response=se.ResponseSnapshot(id="resp_1")),
    se.ResponseDoneEvent(response=se.ResponseSnapshot(
        id="resp_1", status="cancelled", status_details={"type": "cancelled", "reason": "turn_detected"},
        output=[ASSISTANT, CALL], usage=se.Usage(input_text_tokens=20, cached_tokens=5,
                                                  output_text_tokens=9))),
    se.OutputItemAddedEvent(response_id="resp_1", output_index=0, item=ASSISTANT),
    se.OutputItemDoneEvent(response_id="resp_1", output_index=1, item=CALL),
    se.ContentPartAddedEvent(**PART, part={"type": "audio", "transcript": ""}),
    se.ContentPartDoneEvent(**PART, part={"type": "text", "text": "Hi"}),
    se.AudioDeltaEvent(**PART, delta="AAAA"), se.AudioDoneEvent(**PART),
    se.AudioTranscriptDeltaEvent(**PART, delta="Hi"),
    se.AudioTranscriptDoneEvent(**PART, transcript="Hi"),
    se.TextDeltaEvent(**PART, delta="Hi"), se.TextDoneEvent(**PART, text="Hi"),
    se.FunctionCallArgumentsDeltaEvent(response_id="resp_1", item_id="item_f", output_index=0,
                                       call_id="call_1", delta="{"),
    se.FunctionCallArgumentsDoneEvent(response_id="resp_1", item_id="item_f", output_index=0,
                                      call_id="call_1", name="get_weather", arguments="{}"),
    se.OutputAudioBufferClearedEvent(response_id="resp_1"),
]


@pytest.mark.parametrize("dialect", list(Dialect))
def test_every_server_event_validates_in_every_dialect(dialect: Dialect) -> None:
    rendered = [e.render(dialect) for e in EVENTS]
    sent = [r for r in rendered if r is not None]
    for wire in sent:
        check_event(wire, dialect)
    kinds = {w["type"] for w in sent}
    if dialect is Dialect.GA:
        assert {"response.output_audio.delta", "conversation.item.added", "conversation.item.done"} <= kinds
        assert not kinds & {"response.audio.delta", "conversation.item.created", "warning"}
    else:
        assert {"response.audio.delta", "conversation.item.created"} <= kinds
        assert not kinds & {"response.output_audio.delta", "conversation.item.added",
                            "conversation.item.done"}
    assert ("warning" in kinds) == (dialect is Dialect.VOICE_LIVE)


def test_conformance_check_rejects_wrong_shapes() -> None:
    """The validator itself must be able to fail, in each dialect."""
    bad = {"type": "response.audio.delta", "event_id": "e", "response_id": "r"}
    for dialect in (Dialect.BETA, Dialect.VOICE_LIVE):
        with pytest.raises((AssertionError, ValidationError)):
            check_event(bad, dialect)
    with pytest.raises(AssertionError):  # a beta name is not a GA event
        check_event({**bad, "item_id": "i", "output_index": 0, "content_index": 0, "delta": ""},
                    Dialect.GA)


def test_dialect_is_picked_from_path_and_beta_header() -> None:
    assert pick_dialect("/voice-live/realtime", {}) is Dialect.VOICE_LIVE
    assert pick_dialect("/v1/realtime", {"openai-beta": "realtime=v1"}) is Dialect.BETA
    assert pick_dialect("/openai/realtime", {}) is Dialect.GA


def test_client_events_parse_without_event_id_with_type_last_and_nulls() -> None:
    ev = parse_client_event('{"session": {"turn_detection": null}, "type": "session.update"}')
    assert ev.type == "session.update" and ev.event_id is None
    assert ev.session == {"turn_detection": None}  # type: ignore[union-attr]
    ev = parse_client_event('{"type": "response.cancel", "response_id": null, "extra": 1}')
    assert ev.type == "response.cancel"


def test_parse_errors_carry_code_param_and_event_id() -> None:
    with pytest.raises(ParsedError) as info:
        parse_client_event('{"type": "conversation.item.truncate", "event_id": "e9", "item_id": "a", '
                           '"content_index": 0}')
    assert info.value.code == "missing_required_parameter"
    assert info.value.param == "audio_end_ms" and info.value.event_id == "e9"


def test_ga_update_merges_nested_fields_and_null_clears() -> None:
    cfg = SessionConfig()
    cfg = apply_update(cfg, {"type": "realtime", "audio": {"input": {
        "format": {"type": "audio/pcmu"}, "transcription": {"model": "whisper-1", "language": "en"}}}},
        Dialect.GA, VOICES, False).config
    assert cfg.input_format.encoding == "g711_ulaw" and cfg.input_format.rate == 8000
    assert cfg.turn_detection is not None  # untouched
    cfg = apply_update(cfg, {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
                       Dialect.GA, VOICES, False).config
    assert cfg.turn_detection is None and cfg.transcription is not None
    rendered = render_session(cfg, Dialect.GA, "s", 1)
    assert rendered["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert rendered["audio"]["input"]["turn_detection"] is None


def test_update_errors_name_the_parameter_and_change_nothing() -> None:
    cfg = SessionConfig(instructions="keep")
    err = refused(apply_update, cfg, {"instructions": "new", "input_audio_format": "mp3"}, Dialect.BETA, VOICES, False)
    assert err.param == "session.input_audio_format"
    assert cfg.instructions == "keep"
    err = refused(apply_update, cfg, {"turn_detection": {"type": "server_vad", "threshold": 2}}, Dialect.BETA,
                     VOICES, False)
    assert err.code == "invalid_value" and err.param == "session.turn_detection.threshold"


def test_voice_is_locked_after_audio_and_unknown_voices_are_refused() -> None:
    cfg = SessionConfig()
    err = refused(apply_update, cfg, {"voice": "en-US-AvaNeural"}, Dialect.BETA, VOICES,
                  audio_started=True)
    assert "cannot change" in err.message and err.param == "session.voice"
    err = refused(apply_update, cfg, {"voice": "nobody"}, Dialect.BETA, VOICES, False)
    assert err.param == "session.voice"


def test_voice_live_objects_unknowns_and_unsupported_fields() -> None:
    result = apply_update(SessionConfig(), {
        "voice": {"type": "azure-standard", "name": "en-US-AvaNeural", "temperature": 0.8},
        "input_audio_sampling_rate": 16000, "output_audio_format": "pcm16_8000hz",
        "input_audio_noise_reduction": {"type": "azure_deep_noise_suppression"},
        "whatever": 1}, Dialect.VOICE_LIVE, VOICES, False)
    assert result.config.voice == "en-US-AvaNeural"
    assert result.config.input_format.rate == 16000 and result.config.output_format.rate == 8000
    assert {p for _, p in result.warnings} == {"session.whatever", "session.voice.temperature"}
    assert result.config.noise_reduction == "azure_deep_noise_suppression"
    rendered = render_session(result.config, Dialect.VOICE_LIVE, "s", 1)
    assert rendered["voice"]["type"] == "azure-standard"
    assert rendered["output_audio_format"] == "pcm16_8000hz"
    err = refused(apply_update, SessionConfig(), {"avatar": {"character": "lisa"}},
                  Dialect.VOICE_LIVE, VOICES, False)
    assert "avatar" in err.message
    err = refused(apply_update, SessionConfig(), {"whatever": 1}, Dialect.BETA, VOICES, False)  # the same unknown field is an error in beta
    assert err.code == "unknown_parameter"


def test_client_items_are_checked_by_role() -> None:
    item = parse_client_item({"type": "message", "role": "assistant",
                              "content": [{"type": "output_text", "text": "hi"}]})
    assert item.content[0].type == "text" and item.id.startswith("item_")
    with pytest.raises(ProtocolError, match="not valid for a system"):
        parse_client_item({"type": "message", "role": "system",
                           "content": [{"type": "input_audio", "audio": "AAAA"}]})
    with pytest.raises(ProtocolError) as info:
        parse_client_item({"type": "function_call_output", "call_id": "c"})
    assert info.value.param == "item.output"
