"""Hypothesis strategies and profiles for fuzzing client events (unit and e2e share them).

Random JSON alone almost never gets past the parser, so most cases start from a well-formed
event: either one the official SDKs' own TypedDicts describe (`st.from_type` on
`RealtimeClientEventParam`, GA or beta), or one built here from the protocol's vocabulary with
ids the session really holds. A share of them is then mutated (a field dropped, retyped,
blown up or shrunk, the frame cut short). Each case says whether it must be refused, and if so
which `param` the error has to name.

Profiles: `ci` (the default) is derandomized with no example database, so a CI run is the same
run every time; `HYPOTHESIS_PROFILE=long` runs ten times as many cases with fresh randomness.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import openai.types.beta.realtime as beta_params
import openai.types.realtime as ga_params
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ErrorCode

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# No shrinking in CI: a case is a whole session run, and shrinking one took over five minutes;
# the failure report's blob (`@reproduce_failure`) replays it, shrinking then, locally.
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=_QUIET, print_blob=True,
                          phases=[Phase.explicit, Phase.generate])
settings.register_profile("long", derandomize=False, database=None, deadline=None,
                          suppress_health_check=_QUIET, print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(ci: int) -> int:
    """Cases for a test: `ci` in CI, ten times as many under the long profile."""
    return ci * 10 if PROFILE == "long" else ci


@dataclass
class Case:
    """One frame to send, and what the server owes it."""

    frame: str | bytes
    what: str  # how it was made, for failure messages
    invalid: bool = False  # the server must answer with an `error`
    param: str | None = None  # ... naming this parameter (prefix match)
    # False when the event mutated may hold other faults (the SDK shapes filled at random):
    # the error may then name one of those, but still has to name one
    exact: bool = True

    def __repr__(self) -> str:  # a failure report must stay readable with 100 kB frames in it
        frame = self.frame if len(self.frame) <= 300 else self.frame[:300] + "..."
        return f"Case({frame!r}, {self.what!r}, invalid={self.invalid}, param={self.param!r})"


# --- JSON values --------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
# Sizes at and past the edges: what an `int` field or a string field sees least often.
extremes = st.sampled_from([0, -1, 1, 2**31, 2**63, -2**63, 10**30, 1e308, -1e-308, 0.5, "",
                            "x" * 100_000, [], {}, [[[[[[]]]]]], True, None, "\u0000", "😀" * 50])


def _jsonable(value: Any) -> Any:
    """The SDK TypedDicts type lists as `Iterable`, which hypothesis fills with iterators (and
    a few fields as `object`, filled with whatever; those become a string)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)) or hasattr(value, "__next__"):
        return [_jsonable(v) for v in value]
    return repr(value)


def sdk_events(dialect: Dialect) -> st.SearchStrategy[dict[str, Any]]:
    """Client events as the official openai SDK types them (Voice Live speaks the beta shapes)."""
    union = ga_params.RealtimeClientEventParam if dialect is Dialect.GA else \
        beta_params.RealtimeClientEventParam
    return st.from_type(union).map(_jsonable)  # type: ignore[arg-type]


# --- mostly valid events from the protocol's vocabulary -----------------------------------------


@functools.lru_cache
def pcm16_b64(seconds: float, amp: float = 0.3) -> str:
    """A 300 Hz tone (silence at amp 0) as an append's base64."""
    t = np.arange(int(24000 * seconds)) / 24000
    return base64.b64encode((amp * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2").tobytes()
                            ).decode()


# (seconds, amplitude); strategies map them to audio so failure reports do not print the audio
tones = st.sampled_from([(s, a) for s in (0.02, 0.1, 0.6, 1.2) for a in (0.0, 0.3)]).map(
    lambda spec: pcm16_b64(*spec))
bad_base64 = st.one_of(st.sampled_from(["abc", "====", "a===", "YWJj\n", "!!!!", "YQ", "Y Q==",
                                        "AAA", base64.b64encode(b"\x01").decode()]),
                       st.text(min_size=1, max_size=40).filter(lambda s: not _is_b64(s)))


def _is_b64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return True


def session_payloads(dialect: Dialect) -> st.SearchStrategy[dict[str, Any]]:
    """A `session` object with real field names of `dialect` and mostly sensible values."""
    turn = st.one_of(st.none(), st.fixed_dictionaries({"type": st.just("server_vad")}, optional={
        "threshold": st.floats(0, 1), "silence_duration_ms": st.integers(0, 2000),
        "prefix_padding_ms": st.integers(0, 1000), "create_response": st.booleans(),
        "interrupt_response": st.booleans()}), st.just({"type": "semantic_vad"}))
    tool = st.just({"type": "function", "name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}})
    common = {"instructions": st.text(max_size=50), "tools": st.lists(tool, max_size=2),
              "tool_choice": st.sampled_from(["auto", "none", "required"])}
    if dialect is Dialect.GA:
        audio = st.fixed_dictionaries({}, optional={
            "input": st.fixed_dictionaries({}, optional={
                "format": st.just({"type": "audio/pcm", "rate": 24000}),
                "turn_detection": turn,
                "transcription": st.one_of(st.none(), st.just({"model": "whisper-1"}))}),
            "output": st.fixed_dictionaries({}, optional={
                "voice": st.sampled_from(["alloy", "heart", "nobody"]),
                "speed": st.floats(0.25, 1.5)})})
        return st.fixed_dictionaries({"type": st.sampled_from(["realtime", "realtime",
                                                               "transcription"])}, optional={
            **common, "audio": audio,
            "output_modalities": st.sampled_from([["audio"], ["text"]]),
            "max_output_tokens": st.one_of(st.integers(1, 4096), st.just("inf"))})
    fields = {**common, "turn_detection": turn,
              "modalities": st.sampled_from([["text", "audio"], ["text"]]),
              "input_audio_format": st.sampled_from(["pcm16", "g711_ulaw", "g711_alaw"]),
              "output_audio_format": st.sampled_from(["pcm16", "g711_ulaw"]),
              "input_audio_transcription": st.one_of(st.none(), st.just({"model": "whisper-1"})),
              "temperature": st.floats(0.6, 1.2), "speed": st.floats(0.25, 1.5),
              "max_response_output_tokens": st.one_of(st.integers(1, 4096), st.just("inf"))}
    if dialect is Dialect.VOICE_LIVE:
        fields["voice"] = st.one_of(st.sampled_from(["alloy", "en-US-AvaNeural"]), st.just(
            {"name": "en-US-AvaNeural", "type": "azure-standard"}))
        fields["input_audio_sampling_rate"] = st.sampled_from([16000, 24000])
    else:
        fields["voice"] = st.sampled_from(["alloy", "heart", "nobody"])
    return st.fixed_dictionaries({}, optional=fields)


def text_item(role: str = "user", text: str = "hello") -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


def items(dialect: Dialect) -> st.SearchStrategy[dict[str, Any]]:
    assistant_text = "output_text" if dialect is Dialect.GA else "text"
    return st.one_of(
        st.builds(lambda r, t: text_item(r, t), st.sampled_from(["user", "system"]),
                  st.text(max_size=30)),
        st.builds(lambda t: {"type": "message", "role": "assistant",
                             "content": [{"type": assistant_text, "text": t}]}, st.text(max_size=30)),
        st.builds(lambda c, o: {"type": "function_call_output", "call_id": c, "output": o},
                  st.sampled_from(["call_1", "nope"]), st.text(max_size=30)),
        st.builds(lambda c: {"type": "function_call", "call_id": c, "name": "get_weather",
                             "arguments": "{}"}, st.sampled_from(["call_1", "call_2"])),
        st.builds(lambda a: {"type": "message", "role": "user",
                             "content": [{"type": "input_audio", "audio": a}]},
                  st.one_of(tones, bad_base64)),
    )


# Required fields of each event and the wrong-typed values that must be refused naming them.
REQUIRED = {"input_audio_buffer.append": ("audio",), "conversation.item.delete": ("item_id",),
            "conversation.item.retrieve": ("item_id",),
            "conversation.item.truncate": ("item_id", "content_index", "audio_end_ms"),
            "conversation.item.create": ("item",), "session.update": ("session",),
            "input_audio.turn.start": ("turn_id",), "input_audio.turn.append": ("turn_id", "audio"),
            "input_audio.turn.end": ("turn_id",), "input_audio.turn.cancel": ("turn_id",)}
_WRONG = {"audio": [5, None, ["a"], {"a": 1}], "item_id": [5, None, ["a"], True],
          "item": ["x", 5, None, []], "session": ["x", 5, None, []], "turn_id": [5, None, {}],
          "content_index": ["0", -1, 1.5, None], "audio_end_ms": ["10", -5, 2.5, None]}


@st.composite
def mutated(draw: st.DrawFn, event: dict[str, Any]) -> Case:
    """`event` itself, or with one mutation; says when the result must be refused."""
    kind = event.get("type")
    how = draw(st.sampled_from(["as_is"] * 10 + ["drop", "retype", "extra", "extreme", "cut",
                                                 "no_type", "bad_type", "required"]))
    event = dict(event)
    keys = [k for k in event if k != "type"]
    if how == "drop" and keys:
        key = draw(st.sampled_from(keys))
        del event[key]
        if key in REQUIRED.get(str(kind), ()):
            return Case(json.dumps(event), f"drop {key}", True, key)
    elif how == "retype" and keys:
        key = draw(st.sampled_from(keys))
        event[key] = draw(json_values)
    elif how == "extra":
        event[draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in event))] = \
            draw(json_values)
    elif how == "extreme" and keys:
        event[draw(st.sampled_from(keys))] = draw(extremes)
    elif how == "cut":
        text = json.dumps(event)
        cut = text[:draw(st.integers(0, max(0, len(text) - 1)))]
        return Case(cut, "cut short", True)
    elif how == "no_type":
        event.pop("type", None)
        return Case(json.dumps(event), "no type", True, "type")
    elif how == "bad_type":
        event["type"] = draw(st.one_of(st.text(max_size=30), st.integers(), st.none()))
        return Case(json.dumps(event), f"type {event['type']!r}", True, "type")
    elif how == "required" and kind in REQUIRED:
        key = draw(st.sampled_from(REQUIRED[str(kind)]))
        event[key] = draw(st.sampled_from(_WRONG[key]))
        return Case(json.dumps(event), f"{key}={event[key]!r}", True, key)
    return Case(json.dumps(event), how)


# Frames that are not an event at all.
junk_frames = st.one_of(
    st.builds(lambda v: Case(json.dumps(v), "non-object JSON", True),
              st.one_of(scalars, st.lists(json_values, max_size=3))),
    st.builds(lambda b: Case(b, "binary frame", True), st.binary(max_size=64)),
    st.builds(lambda t: Case(t, "random text", True),
              st.text(max_size=64).filter(lambda t: not _is_json_object(t))),
    st.builds(lambda v: Case(json.dumps(v), "random object"),
              st.dictionaries(st.text(max_size=10), json_values, max_size=4)),
)


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


# --- what a fuzz run draws, and what it checks -----------------------------------------------

# Codes that are about one parameter: their error must say which. The two raised while the JSON
# is still being decoded (a number out of range, an object with too many keys) cannot know
# where they are yet, and a refusal of the event in this session's state (response.create in a
# transcription session) concerns no parameter; those are told apart by their message.
PARAM_CODES = {ErrorCode.INVALID_VALUE, ErrorCode.INVALID_TYPE,
               ErrorCode.MISSING_REQUIRED_PARAMETER, ErrorCode.UNKNOWN_PARAMETER,
               ErrorCode.UNKNOWN_EVENT_TYPE, ErrorCode.TRUNCATE_INVALID_AUDIO_END}
NO_PARAM = ("is out of range", "fields is more than", "this is a transcription session")


def item_ids(sent: list[dict[str, Any]]) -> list[str]:
    return [e["item"]["id"] for e in sent if e["type"] in (
        "conversation.item.created", "conversation.item.added", "response.output_item.added")]


def response_ids(sent: list[dict[str, Any]]) -> list[str]:
    return [e["response"]["id"] for e in sent if e["type"] == "response.created"]


@st.composite
def vocabulary_event(draw: st.DrawFn, dialect: Dialect, sent: list[dict[str, Any]]
                     ) -> dict[str, Any]:
    """A well-formed event with ids the session holds (or nearly holds); `sent` is what the
    server has sent so far."""
    # Ids are drawn as indices of a fixed range, not from the live list: what the session holds
    # depends on timing, and hypothesis needs the same draws to mean the same choices.
    known = item_ids(sent) or ["item_none"]
    responses = response_ids(sent) or ["resp_x"]
    spoken = [e["item"]["id"] for e in sent if e["type"] == "response.output_item.added"] or known
    pick = st.integers(0, 63)
    item_id = draw(st.one_of(pick.map(lambda i: known[-1 - i % len(known)]),
                             pick.map(lambda i: known[-1 - i % len(known)]),
                             st.sampled_from(["item_x", ""])))
    # truncation concerns what the assistant said: its items, most of the time
    said_id = draw(st.one_of(pick.map(lambda i: spoken[-1 - i % len(spoken)]), st.just(item_id)))
    turn_id = draw(st.sampled_from(["t1", "t1", "t2"]))
    truncate = st.builds(lambda c, ms: {"type": "conversation.item.truncate", "item_id": said_id,
                                        "content_index": c, "audio_end_ms": ms},
                         st.integers(0, 2), st.one_of(st.integers(0, 3000), st.just(2**62)))
    choices: list[st.SearchStrategy[dict[str, Any]]] = [
        st.builds(lambda a: {"type": "input_audio_buffer.append", "audio": a}, tones),
        st.builds(lambda a: {"type": "input_audio_buffer.append", "audio": a}, bad_base64),
        st.just({"type": "input_audio_buffer.commit"}),
        st.just({"type": "input_audio_buffer.clear"}),
        st.just({"type": "output_audio_buffer.clear"}),
        st.builds(lambda i, p: {"type": "conversation.item.create", "item": i,
                                **({"previous_item_id": p} if p else {})},
                  items(dialect), st.one_of(st.none(), st.just("root"), st.just(item_id))),
        st.just({"type": "conversation.item.delete", "item_id": item_id}),
        st.just({"type": "conversation.item.retrieve", "item_id": item_id}),
        truncate, truncate,  # twice: its refusals are the most varied
        st.builds(lambda s: {"type": "session.update", "session": s}, session_payloads(dialect)),
        st.builds(lambda r: {"type": "response.create", **({"response": r} if r else {})},
                  st.one_of(st.none(), st.fixed_dictionaries({}, optional={
                      "instructions": st.text(max_size=20),
                      "conversation": st.sampled_from(["auto", "none"]),
                      "max_output_tokens": st.integers(1, 50)}))),
        st.builds(lambda r: {"type": "response.cancel", **({"response_id": r} if r else {})},
                  st.one_of(st.none(), st.integers(0, 63).map(
                      lambda i: responses[-1 - i % len(responses)]), st.just("resp_x"))),
    ]
    if dialect is Dialect.BETA:
        choices.append(st.builds(lambda s: {"type": "transcription_session.update", "session": s},
                                 st.just({"input_audio_transcription": {"model": "whisper-1"}})))
    if dialect is Dialect.VOICE_LIVE:
        choices += [st.just({"type": "input_audio.turn.start", "turn_id": turn_id}),
                    st.just({"type": "input_audio.turn.append", "turn_id": turn_id,
                             "audio": pcm16_b64(0.1, 0.3)}),
                    st.just({"type": "input_audio.turn.end", "turn_id": turn_id}),
                    st.just({"type": "input_audio.turn.cancel", "turn_id": turn_id}),
                    st.just({"type": "input_audio.clear"})]
    event = draw(st.one_of(choices))
    if draw(st.booleans()):
        event["event_id"] = f"evt_{draw(st.integers(0, 10**6))}"
    return event


@st.composite
def cases(draw: st.DrawFn, dialect: Dialect, sent: list[dict[str, Any]]) -> Case | float:
    """The next thing to do: a frame, or a pause (seconds) so a response runs meanwhile."""
    source = draw(st.sampled_from(["vocab"] * 6 + ["sdk"] * 3 + ["junk", "pause", "pause"]))
    if source == "pause":
        return draw(st.sampled_from([0.0, 0.002, 0.01]))
    if source == "junk":
        return draw(junk_frames)
    event = draw(vocabulary_event(dialect, sent) if source == "vocab"
                 else sdk_events(dialect))
    case = draw(mutated(event))
    case.exact = source == "vocab"
    return case


def error_problems(events: list[dict[str, Any]]) -> list[str]:
    problems = []
    for e in events:
        if e["type"] != "error":
            continue
        err = e["error"]
        if err.get("code") == ErrorCode.SERVER_ERROR or err.get("type") == "server_error":
            problems.append(f"server error: {err}")
        elif err.get("code") in PARAM_CODES and not err.get("param") \
                and not any(m in err.get("message", "") for m in NO_PARAM):
            problems.append(f"error without param: {err}")
    return problems
