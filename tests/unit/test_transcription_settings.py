"""Transcription settings from session.update to the ASR request: languages (validated, reduced
to Whisper's codes, lists meaning detection among them), phrases and keywords, the model table."""

from __future__ import annotations

import asyncio

import pytest

from tests.conformance import check_event
from tests.unit.refusals import refused
from tests.unit.fakes import append_event, silence_pcm16, start_session, tone_pcm16
from voxserve.config import AsrOptions, OptionsError, known_transcription_model, load_options
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ProtocolError
from voxserve.protocol.session_config import SessionConfig, VoiceTable, apply_update, render_session
from voxserve.session.transcriber import recognition

pytestmark = pytest.mark.unit

VOICES = VoiceTable({"alloy": "heart"})
GA, BETA, VL = Dialect.GA, Dialect.BETA, Dialect.VOICE_LIVE


def _update(raw: dict, dialect: Dialect) -> SessionConfig:
    return apply_update(SessionConfig(), raw, dialect, VOICES, False).config


def _refusal(raw: dict, dialect: Dialect) -> ProtocolError:
    return refused(apply_update, SessionConfig(), raw, dialect, VOICES, False)


def test_voice_live_language_tags_and_lists_reach_the_asr_as_whisper_codes() -> None:
    cfg = _update({"input_audio_transcription": {"model": "azure-speech", "language": "es-MX"}}, VL)
    assert recognition(cfg) == ("es", None, ())
    cfg = _update({"input_audio_transcription": {"model": "azure-speech",
                                                 "language": "en-US,es-MX",
                                                 "phrase_list": ["VoxServe", "Qdrant"]}}, VL)
    assert recognition(cfg) == (("en", "es"), None, ("VoxServe", "Qdrant"))
    # the client's spelling is echoed back, not ours
    rendered = render_session(cfg, VL, "sess_1", 0)["input_audio_transcription"]
    assert rendered["language"] == "en-US,es-MX" and rendered["phrase_list"] == ["VoxServe", "Qdrant"]


def test_voice_live_turn_detection_languages_apply_when_transcription_names_none() -> None:
    cfg = _update({"input_audio_transcription": {"model": "azure-speech"},
                   "turn_detection": {"type": "azure_semantic_vad_multilingual",
                                      "languages": ["en-US", "fr-FR"]}}, VL)
    assert recognition(cfg)[0] == ("en", "fr")
    cfg = _update({"input_audio_transcription": {"model": "azure-speech", "language": "de-DE"},
                   "turn_detection": {"type": "azure_semantic_vad", "languages": ["en-US"]}}, VL)
    assert recognition(cfg)[0] == "de"


def test_ga_transcription_languages_keywords_and_delay_are_accepted_and_echoed() -> None:
    """`delay` is checked, then left out of the echo: it has no effect here (a notice says so)."""
    raw = {"audio": {"input": {"transcription": {
        "model": "gpt-4o-transcribe", "languages": ["en", "es"], "keywords": ["Nexalis"],
        "prompt": "Support call.", "delay": "low"}}}}
    cfg = _update(raw, GA)
    assert recognition(cfg) == (("en", "es"), "Support call.", ("Nexalis",))
    rendered = render_session(cfg, GA, "sess_1", 0)["audio"]["input"]["transcription"]
    sent = dict(raw["audio"]["input"]["transcription"])  # type: ignore[index]
    assert sent.pop("delay") == "low" and rendered == sent
    check_event({"type": "session.updated", "event_id": "e1",
                 "session": render_session(cfg, GA, "sess_1", 0)}, GA)
    # language wins over languages; phrases and keywords merge without repeats
    cfg = _update({"audio": {"input": {"transcription": {
        "model": "whisper-1", "language": "ES", "languages": ["en", "es"]}}}}, GA)
    assert recognition(cfg)[0] == "es"


def test_no_language_leaves_the_choice_to_the_operator() -> None:
    assert recognition(_update({"input_audio_transcription": {"model": "whisper-1"}}, BETA)) == \
        (None, None, ())
    assert recognition(SessionConfig())[0] is None


@pytest.mark.parametrize(("dialect", "raw", "param"), [
    (VL, {"input_audio_transcription": {"model": "azure-speech", "language": "xx-YY"}},
     "session.input_audio_transcription.language"),
    (VL, {"input_audio_transcription": {"model": "azure-speech", "language": "en-US,klingon"}},
     "session.input_audio_transcription.language"),
    (BETA, {"input_audio_transcription": {"model": "whisper-1", "language": "zz"}},
     "session.input_audio_transcription.language"),
    (GA, {"audio": {"input": {"transcription": {"model": "whisper-1", "languages": ["en", "qq"]}}}},
     "session.audio.input.transcription.languages"),
    (GA, {"audio": {"input": {"transcription": {"model": "whisper-1", "delay": "slow"}}}},
     "session.audio.input.transcription.delay"),
    (VL, {"turn_detection": {"type": "azure_semantic_vad", "languages": ["en-US", "xx"]}},
     "session.turn_detection.languages"),
])
def test_an_unknown_language_is_an_error_naming_the_parameter(dialect: Dialect, raw: dict,
                                                               param: str) -> None:
    err = _refusal(raw, dialect)
    assert err.code.value == "invalid_value" and err.param == param, (err.param, str(err))


def test_transcription_model_names_are_known_by_the_operator_table() -> None:
    opts = AsrOptions()
    for name in ("whisper-1", "gpt-4o-transcribe", "GPT-4o-mini-transcribe",
                 "gpt-realtime-whisper", "azure-speech", None):
        assert known_transcription_model(name, opts), name
    assert not known_transcription_model("nova-3", opts)
    custom = AsrOptions(transcription_models={"Nova-3": "default"})
    assert known_transcription_model("nova-3", custom)
    assert not known_transcription_model("whisper-1", custom)  # the table replaces the default


def test_operator_language_is_validated_at_load() -> None:
    assert load_options(data={"asr": {"language": "es-MX"}}).asr.language == "es-MX"
    assert load_options(data={"asr": {"language": "en,es"}}).asr.language == "en,es"
    assert load_options(data={"asr": {"language": None}}).asr.language is None
    with pytest.raises(OptionsError, match="language"):
        load_options(data={"asr": {"language": "klingon"}})


async def test_a_turn_asks_the_asr_for_the_sessions_languages_and_phrases() -> None:
    session, tr, pipe, task = await start_session(VL)
    tr.push({"type": "session.update", "session": {
        "input_audio_transcription": {"model": "azure-speech", "language": "en-US,es-MX",
                                      "phrase_list": ["VoxServe"]}}})
    await tr.wait_for("session.updated")
    tr.push(append_event(tone_pcm16(1.0) + silence_pcm16(0.8)))
    await tr.wait_for("conversation.item.input_audio_transcription.completed")
    assert pipe.asr_requests and set(pipe.asr_requests) == {(("en", "es"), None, ("VoxServe",))}
    tr.push({"type": "session.update", "session": {
        "input_audio_transcription": {"model": "azure-speech", "language": "tlh-Latn"}}})
    error = await tr.wait_for("error")
    assert error["error"]["param"] == "session.input_audio_transcription.language"
    tr.inbox.put_nowait(None)
    await asyncio.wait_for(task, 10)
