"""docs/protocol.md's field-by-field table is complete and true.

Complete: every event type and payload field the installed SDKs define (tests/protocol_inventory.py)
has a row, with the dialects whose SDK has it. True: every row's status is one the table defines,
its test exists, and where the code can be asked, the code agrees: session rows are applied with
`apply_update`, response rows parsed with `parse_response_overrides`, client event rows parsed with
`parse_client_event`, and server event rows compared with the names the server's event types render.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.protocol_inventory import Kind, inventory
from voxserve.protocol import client_events as ce
from voxserve.protocol import server_events as se
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ProtocolError
from voxserve.protocol.response_overrides import ResponseOverrides, parse_response_overrides
from voxserve.protocol.session_config import SessionConfig, UpdateResult, VoiceTable, apply_update
from voxserve.session.handlers import router

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "protocol.md"
STATUSES = {"implemented", "accepted-with-warning", "ignored", "refused", "not sent"}
_DIALECTS = {"GA": Dialect.GA, "beta": Dialect.BETA, "VL": Dialect.VOICE_LIVE}
_HEADINGS: dict[str, Kind] = {"Client events": "client event", "Server events": "server event",
                              "session.update fields": "session",
                              "response.create fields": "response"}
IN_SDK, EXTRA, ABSENT = "✓", "+", "–"


@dataclass(frozen=True)
class Row:
    kind: Kind
    name: str
    marks: dict[Dialect, str]
    status: str
    overrides: dict[Dialect, str]
    test: str

    def served(self) -> list[Dialect]:
        """The dialects the row speaks for: the SDK's, and those VoxServe answers beyond it."""
        return [d for d in Dialect if self.marks[d] != ABSENT]

    def status_in(self, dialect: Dialect) -> str:
        return self.overrides.get(dialect, self.status)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _status(cell: str) -> tuple[str, dict[Dialect, str]]:
    """`implemented` or `implemented; GA: not sent; VL: refused`."""
    main, *rest = [part.strip() for part in cell.split(";")]
    overrides = {}
    for part in rest:
        label, _, status = part.partition(":")
        overrides[_DIALECTS[label.strip()]] = status.strip()
    return main, overrides


def parse_table(text: str) -> list[Row]:
    rows: list[Row] = []
    section = text.split("\n## Field by field\n", 1)[1].split("\n## ", 1)[0]
    kind: Kind | None = None
    for line in section.splitlines():
        if line.startswith("### "):
            kind = _HEADINGS[line[4:].replace("`", "").strip()]
            continue
        cells = _cells(line)
        if not line.startswith("| `") or kind is None:
            continue  # prose, a header row or a rule
        name, ga, beta, vl, status, _note, test = cells
        main, overrides = _status(status)
        rows.append(Row(kind, name.strip("`"), dict(zip(Dialect, (ga, beta, vl), strict=True)),
                        main, overrides, test.strip("`")))
    return rows


ROWS = parse_table(DOC.read_text(encoding="utf-8"))
BY_KEY = {(r.kind, r.name): r for r in ROWS}


def _rows(kind: Kind) -> list[Row]:
    return [r for r in ROWS if r.kind == kind]


# --- complete ------------------------------------------------------------------------------------


def test_the_table_has_rows_of_every_kind_and_no_row_twice() -> None:
    assert {r.kind for r in ROWS} == set(_HEADINGS.values())
    assert len(BY_KEY) == len(ROWS), [k for k in BY_KEY if sum(1 for r in ROWS
                                                               if (r.kind, r.name) == k) > 1]


def test_every_sdk_event_and_field_has_a_row_with_the_sdks_dialects() -> None:
    missing = sorted(f"{kind}: {name}" for kind, name in inventory() if (kind, name) not in BY_KEY)
    assert not missing, "rows missing from docs/protocol.md: " + ", ".join(missing)
    wrong = []
    for (kind, name), dialects in inventory().items():
        row = BY_KEY[kind, name]
        if {d for d in Dialect if row.marks[d] == IN_SDK} != dialects:
            wrong.append(f"{name} ({kind}): the SDKs have it in {sorted(d.value for d in dialects)}")
    assert not wrong, wrong


def test_rows_beyond_the_sdks_claim_no_sdk() -> None:
    extra = [r for r in ROWS if (r.kind, r.name) not in inventory()]
    assert all(IN_SDK not in r.marks.values() for r in extra), [r.name for r in extra]
    assert all(set(r.marks.values()) <= {IN_SDK, EXTRA, ABSENT} for r in ROWS)


def test_every_row_has_a_status_and_a_test_that_exists() -> None:
    problems = []
    for row in ROWS:
        statuses = {row.status, *row.overrides.values()}
        if not statuses <= STATUSES:
            problems.append(f"{row.name}: status {statuses - STATUSES}")
        events = {"implemented", "not sent"} if row.kind == "server event" else STATUSES - {"not sent"}
        if not statuses <= events:
            problems.append(f"{row.name}: a {row.kind} cannot be {statuses - events}")
        if not set(row.overrides) <= set(row.served()):
            problems.append(f"{row.name}: a status for a dialect the row does not serve")
        path, _, func = row.test.partition("::")
        func = func.split("[", 1)[0]
        file = ROOT / path
        if not (path.startswith("tests/") and func and file.is_file()):
            problems.append(f"{row.name}: no test file {path!r}")
        elif not re.search(rf"^(async )?def {re.escape(func)}\(", file.read_text("utf-8"), re.M):
            problems.append(f"{row.name}: {path} has no {func}")
    assert not problems, problems


def test_the_field_outcomes_rule_is_written_down() -> None:
    assert "\n## Field outcomes\n" in DOC.read_text(encoding="utf-8")


# --- true: session.update ----------------------------------------------------------------------

VOICES = VoiceTable({"alloy": "heart", "verse": "heart"}, default="alloy", strict=False)
TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object",
                                                                  "properties": {}}}
ITEM = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}

# A well-formed value for each session row, unlike the default (so that a field that takes
# effect changes the config). Parts of a section are sent beside `_CONTEXT`'s siblings, and
# compared with the siblings alone.
_TRANSCRIPTION = {"delay": "low", "keywords": ["VoxServe"], "language": "es",
                  "languages": ["en", "es"], "model": "gpt-4o-transcribe", "prompt": "names",
                  "phrase_list": ["Contoso"], "custom_speech": {"es-MX": "endpoint-1"}}
_TURN = {"create_response": False, "eagerness": "high", "idle_timeout_ms": 5000,
         "interrupt_response": False, "prefix_padding_ms": 100, "silence_duration_ms": 800,
         "threshold": 0.7, "type": "server_vad", "auto_truncate": True,
         "end_of_utterance_detection": {"model": "semantic_detection_v1"},
         "languages": ["en", "es"], "remove_filler_words": True, "speech_duration_ms": 200}
_EOU = {"model": "semantic_detection_v1_multilingual", "threshold_level": "high",
        "timeout_ms": 2000, "threshold": 0.9, "timeout": 3}
_VOICE = {"custom_lexicon_url": "https://example.com/lexicon.xml",
          "custom_text_normalization_url": "https://example.com/tn.xml", "endpoint_id": "e1",
          "locale": "en-US", "model": "DragonLatestNeural", "name": "verse", "pitch": "+5%",
          "prefer_locales": ["en-GB"], "rate": "1.2", "style": "cheerful", "temperature": 0.7,
          "type": "azure-custom", "volume": "+10%"}
SESSION_SAMPLES: dict[str, Any] = {
    "type": "transcription", "model": "my-model", "instructions": "Be brief.",
    "output_modalities": ["text"], "modalities": ["text"], "tools": [TOOL],
    "tool_choice": "required", "max_output_tokens": 100, "max_response_output_tokens": 100,
    "include": ["item.input_audio_transcription.logprobs"], "parallel_tool_calls": False,
    "prompt": {"id": "pmpt_1"}, "reasoning": {"effort": "low"}, "reasoning_effort": "low",
    "tracing": "auto", "truncation": "disabled", "temperature": 0.6, "speed": 1.2,
    "voice": "verse", "metadata": {"k": "v"}, "voxserve": {"response_timing": True},
    "client_secret": {"expires_after": {"anchor": "created_at", "seconds": 60}},
    "audio.input.format": {"type": "audio/pcmu"}, "audio.output.format": {"type": "audio/pcma"},
    "audio.input.noise_reduction": {"type": "near_field"}, "audio.output.speed": 1.2,
    "audio.output.voice": "verse", "audio.input.transcription": {"model": "whisper-1"},
    "audio.input.turn_detection": None, "input_audio_format": "g711_ulaw",
    "output_audio_format": "g711_alaw", "input_audio_noise_reduction": {"type": "near_field"},
    "input_audio_transcription": {"model": "whisper-1"}, "turn_detection": None,
    "input_audio_sampling_rate": 16000,
    "input_audio_echo_cancellation": {"type": "server_echo_cancellation"},
    "animation": {"model_name": "default", "outputs": ["viseme_id"]},
    "avatar": {"character": "lisa"}, "agent": {"name": "my-agent"},
    "interim_response": {"type": "static_interim_response", "texts": ["One moment"]},
    "output_audio_timestamp_types": ["word"],
    **{f"audio.input.transcription.{k}": v for k, v in _TRANSCRIPTION.items()},
    **{f"input_audio_transcription.{k}": v for k, v in _TRANSCRIPTION.items()},
    **{f"audio.input.turn_detection.{k}": v for k, v in _TURN.items()},
    **{f"turn_detection.{k}": v for k, v in _TURN.items()},
    **{f"turn_detection.end_of_utterance_detection.{k}": v for k, v in _EOU.items()},
    **{f"voice.{k}": v for k, v in _VOICE.items()},
}
_CONTAINERS = {"", "audio", "audio.input", "audio.output"}


def _context(section: str, dialect: Dialect) -> dict[str, Any]:
    if section.endswith("turn_detection"):  # the semantic type of the dialect
        return {"type": "azure_semantic_vad" if dialect is Dialect.VOICE_LIVE else "semantic_vad"}
    if section.endswith("transcription"):
        return {"model": "whisper-1"}
    if section == "voice":
        return {"name": "alloy", "type": "azure-standard"}
    if section.endswith("end_of_utterance_detection"):
        return {"model": "semantic_detection_v1"}
    return {}


def _nest(path: str, value: Any) -> dict[str, Any]:
    for part in reversed(path.split(".")):
        value = {part: value}
    return value  # type: ignore[no-any-return]


def _session_payloads(name: str, dialect: Dialect) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sample payload of a row, and the same without the row's field."""
    section, _, leaf = name.rpartition(".")
    value = SESSION_SAMPLES[name]
    if section in _CONTAINERS:
        return _nest(name, value), {}
    siblings = _context(section, dialect)
    return _nest(section, {**siblings, leaf: value}), _nest(section, siblings)


def _effective(result: UpdateResult) -> SessionConfig:
    # the voice object is echoed as sent (Voice Live): an echo is not an effect
    return result.config.model_copy(update={"voice_raw": None})


def _session_problem(row: Row, dialect: Dialect) -> str | None:
    sample, without = _session_payloads(row.name, dialect)
    result = apply_update(SessionConfig(), sample, dialect, VOICES, False)
    base = apply_update(SessionConfig(), without, dialect, VOICES, False)
    param = "session." + row.name
    errors = [e.param or "" for e in result.errors]
    warned = [p for _, p in result.warnings]
    changed = _effective(result) != _effective(base)
    status = row.status_in(dialect)
    if status == "refused":
        ok = any(param.startswith(e) or e.startswith(param) for e in errors) and not changed
    elif status == "accepted-with-warning":
        ok = not errors and param in warned and not changed
    elif status == "ignored":
        # no mechanical way to tell a stored value nothing reads from one that is read: the
        # row's note says which fields are only echoed
        ok = not errors and not warned
    else:
        ok = not errors and not warned and changed
    if ok:
        return None
    return (f"{row.name} [{dialect.value}] is marked {status}: errors {errors}, "
            f"warnings {warned}, changed the session: {changed}")


def test_session_rows_agree_with_apply_update() -> None:
    rows = _rows("session")
    missing = [r.name for r in rows if r.name not in SESSION_SAMPLES]
    assert not missing, f"add a sample value for {missing}"
    problems = [p for r in rows for d in r.served() if (p := _session_problem(r, d))]
    assert not problems, "\n".join(problems)


# --- true: response.create -----------------------------------------------------------------------

RESPONSE_SAMPLES: dict[str, Any] = {
    "additional_instructions": "Be brief.", "append_input_items": [ITEM],
    "audio.output.format": {"type": "audio/pcmu"}, "audio.output.voice": "verse",
    "cancel_previous": False, "commit": False, "conversation": "none", "input": [ITEM],
    "input_items": [ITEM], "instructions": "Say hello.",
    "interim_response": {"type": "static_interim_response", "texts": ["One moment"]},
    "invoke_input": {"query": "x"}, "max_output_tokens": 100, "max_response_output_tokens": 100,
    "metadata": {"topic": "greeting"}, "modalities": ["text"], "output_audio_format": "g711_ulaw",
    "output_modalities": ["text"], "parallel_tool_calls": False,
    "pre_generated_assistant_message": {"content": [{"type": "text", "text": "Hello."}]},
    "prompt": {"id": "pmpt_1"}, "reasoning": {"effort": "low"}, "reasoning_effort": "low",
    "temperature": 0.6, "tool_choice": "required", "tools": [TOOL], "voice": "verse",
}


def _overrides(name: str, dialect: Dialect) -> ResponseOverrides:
    if name == "additional_instructions":  # beside `response`, not inside it
        return parse_response_overrides({}, dialect, VOICES, RESPONSE_SAMPLES[name])
    return parse_response_overrides(_nest(name, RESPONSE_SAMPLES[name]), dialect, VOICES)


def _response_problem(row: Row, dialect: Dialect) -> str | None:
    status = row.status_in(dialect)
    try:
        got = _overrides(row.name, dialect)
    except ProtocolError as err:
        return None if status == "refused" else f"{row.name} [{dialect.value}]: {err.message}"
    base = parse_response_overrides({}, dialect, VOICES)
    warned = [p for _, p in got.notices]
    changed = got.__class__(**{**got.__dict__, "notices": ()}) != base
    param = "response." + row.name.split(".")[0]
    ok = {"implemented": not warned and changed,
          "accepted-with-warning": param in warned,
          "ignored": not warned and not changed}.get(status, False)
    if ok:
        return None
    return (f"{row.name} [{dialect.value}] is marked {status}: notices {warned}, "
            f"changed the response: {changed}")


def test_response_rows_agree_with_parse_response_overrides() -> None:
    rows = _rows("response")
    missing = [r.name for r in rows if r.name not in RESPONSE_SAMPLES]
    assert not missing, f"add a sample value for {missing}"
    problems = [p for r in rows for d in r.served() if (p := _response_problem(r, d))]
    assert not problems, "\n".join(problems)


# --- true: events --------------------------------------------------------------------------------


def test_client_event_rows_agree_with_the_parser_and_the_handlers() -> None:
    handled = {name for name, cls in ce._TYPES.items() if cls in router.event_types}
    problems = []
    for row in _rows("client event"):
        if row.status == "implemented":
            if row.name not in ce.CLIENT_EVENT_TYPES or row.name not in handled:
                problems.append(f"{row.name}: marked implemented, but not parsed and handled")
            elif (row.name in ce.VOICE_LIVE_ONLY) != (row.served() == [Dialect.VOICE_LIVE]):
                problems.append(f"{row.name}: Voice Live only in the code or the table, not both")
            continue
        try:
            ce.parse_client_event(json.dumps({"type": row.name}))
        except ce.ParsedError as err:
            if row.status == "refused" and err.code == "unknown_event_type":
                continue
        problems.append(f"{row.name}: marked {row.status}, but the parser knows it")
    assert not problems, problems


def _event_classes(cls: type[se.ServerEvent]) -> list[type[se.ServerEvent]]:
    out = []
    for sub in cls.__subclasses__():
        if "type" in sub.__dict__:
            out.append(sub)
        out += _event_classes(sub)
    return out


def test_server_event_rows_match_what_the_server_emits() -> None:
    """Every event leaves through a ServerEvent type (server_events.py), so the names those types
    render in a dialect are all it can send there."""
    sent = {d: {n for cls in _event_classes(se.ServerEvent)
                if (n := cls.model_construct().wire_type(d))} for d in Dialect}
    problems = []
    for row in _rows("server event"):
        for d in row.served():
            if (row.status_in(d) == "implemented") != (row.name in sent[d]):
                problems.append(f"{row.name} [{d.value}]: marked {row.status_in(d)}")
    unlisted = set().union(*sent.values()) - {r.name for r in _rows("server event")}
    assert not problems and not unlisted, (problems, unlisted)
