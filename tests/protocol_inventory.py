"""What the installed SDKs say the protocol is: event types and payload fields, per dialect.

docs/protocol.md has one row per item listed here (tests/unit/test_protocol_doc.py checks it), so
the table cannot silently fall behind an SDK upgrade. Sources: `openai` (GA `openai.types.realtime`,
beta `openai.types.beta.realtime`; pydantic models, read through `model_fields`) and
`azure-ai-voicelive` (`azure.ai.voicelive.models`; generated `_Model` classes whose wire names are
in `_attr_to_rest_field` and whose annotations name other models as strings like
`'_models.TurnDetection'`).

Payload fields are named by their dotted wire path (`audio.input.transcription.language`).
Objects a client mostly sets as a whole (tools, noise reduction, avatar) are one item; the
sections whose parts have their own outcomes (audio, transcription, turn detection, end of
utterance, Voice Live voice objects) are listed part by part. Run it to print the inventory:
`python -m tests.protocol_inventory`.
"""

from __future__ import annotations

import functools
import re
import typing
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import pydantic
from azure.ai.voicelive import _unions as vl_unions
from azure.ai.voicelive.models import _models as vl
from openai.types.beta.realtime import RealtimeClientEvent as BetaClientEvent
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.beta.realtime import response_create_event as beta_response
from openai.types.beta.realtime import session_update_event as beta_session
from openai.types.beta.realtime import transcription_session_update as beta_transcription
from openai.types.realtime import RealtimeClientEvent as GaClientEvent
from openai.types.realtime import RealtimeServerEvent as GaServerEvent
from openai.types.realtime import response_create_event as ga_response
from openai.types.realtime import session_update_event as ga_session

from voxserve.protocol.dialects import Dialect

Kind = Literal["client event", "server event", "session", "response"]
KINDS: tuple[Kind, ...] = ("client event", "server event", "session", "response")
Inventory = dict[tuple[Kind, str], frozenset[Dialect]]

# Sections listed part by part, without a row of their own (nothing is set on them directly).
_CONTAINERS = frozenset({"audio", "audio.input", "audio.output"})
# Sections of session.update listed as a whole (their null has a meaning: turn detection off) and
# part by part. In response.create a voice object is one item: it is parsed as in the session.
_SECTIONS = frozenset({"audio.input.transcription", "audio.input.turn_detection",
                       "input_audio_transcription", "turn_detection",
                       "turn_detection.end_of_utterance_detection", "voice"})
# Fields of response.create itself that are not payload: the envelope, and `response`.
_ENVELOPE = frozenset({"type", "event_id", "session", "response"})


# --- event types ----------------------------------------------------------------------------------


def _union_members(union: Any) -> tuple[type[pydantic.BaseModel], ...]:
    args = typing.get_args(union)
    if typing.get_origin(union) is typing.Annotated:
        args = typing.get_args(args[0])
    return args


def _type_literal(cls: type[pydantic.BaseModel]) -> str:
    literal = typing.get_args(cls.model_fields["type"].annotation)[0]
    return str(literal)


def _openai_types(union: Any) -> set[str]:
    return {_type_literal(cls) for cls in _union_members(union)}


def _vl_types(base: type) -> set[str]:
    return {str(kind) for kind in getattr(base, "__mapping__", {})}


# --- openai payload fields -----------------------------------------------------------------------


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    """The pydantic models an annotation holds (through Optional, Union, List, Annotated)."""
    found: list[type[pydantic.BaseModel]] = []
    stack = [annotation]
    while stack:
        ann = stack.pop()
        if isinstance(ann, type) and issubclass(ann, pydantic.BaseModel):
            found.append(ann)
        else:
            stack.extend(typing.get_args(ann))
    return found


# A model's fields as (wire name, the models inside that field), found lazily: only sections are
# walked into.
FieldsOf = Callable[[Any], Iterable[tuple[str, Callable[[], list[Any]]]]]


def _walk(models: Iterable[Any], fields_of: FieldsOf, sections: frozenset[str],
          prefix: str = "", skip: frozenset[str] = frozenset()) -> Iterator[str]:
    """Dotted field paths of `models`, into containers and `sections`, SDK-independent."""
    for model in models:
        for wire, inner in fields_of(model):
            if wire in skip:
                continue
            path = prefix + wire
            if path not in _CONTAINERS:
                yield path
            if path in _CONTAINERS or path in sections:
                yield from _walk(inner(), fields_of, sections, path + ".")


def _openai_model_fields(model: type[pydantic.BaseModel]
                         ) -> Iterable[tuple[str, Callable[[], list[Any]]]]:
    return [(info.alias or name, functools.partial(_models_in, info.annotation))
            for name, info in model.model_fields.items()]


def _openai_fields(models: Iterable[type[pydantic.BaseModel]], sections: frozenset[str],
                   skip: frozenset[str] = frozenset()) -> Iterator[str]:
    return _walk(models, _openai_model_fields, sections, skip=skip)


# --- Voice Live payload fields -------------------------------------------------------------------

_REF = re.compile(r"_(models|unions)\.(\w+)")


def _vl_rest_fields(cls: Any) -> dict[str, str]:
    """Attribute name -> wire name of a generated Voice Live model."""
    probe = cls.__new__(cls)
    mapping = getattr(probe, "_attr_to_rest_field", None) or {}
    return {attr: getattr(field, "_rest_name", attr) for attr, field in mapping.items()}


def _vl_annotations(cls: type) -> dict[str, str]:
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        out.update({k: str(v) for k, v in getattr(klass, "__annotations__", {}).items()})
    return out


def _vl_models_in(annotation: str) -> list[type]:
    """The Voice Live models an annotation names, a polymorphic base replaced by its kinds."""
    found: list[type] = []
    for module, name in _REF.findall(annotation):
        if module == "unions":
            found += _vl_models_in(str(getattr(vl_unions, name)))
            continue
        cls = getattr(vl, name, None)
        if not isinstance(cls, type) or not issubclass(cls, vl._Model):
            continue  # an enum or a plain alias
        kinds = list(getattr(cls, "__mapping__", {}).values())
        found += kinds or [cls]
    return found


def _vl_model_fields(model: type) -> Iterable[tuple[str, Callable[[], list[Any]]]]:
    annotations = _vl_annotations(model)
    return [(wire, functools.partial(_vl_models_in, annotations.get(attr, "")))
            for attr, wire in _vl_rest_fields(model).items()]


def _vl_fields(models: Iterable[type], sections: frozenset[str],
               skip: frozenset[str] = frozenset()) -> Iterator[str]:
    return _walk(models, _vl_model_fields, sections, skip=skip)


# --- the inventory --------------------------------------------------------------------------------


def _openai_response(event: type[pydantic.BaseModel]) -> set[str]:
    """The fields of `response`, and any beside it in the event."""
    params = _models_in(event.model_fields["response"].annotation)
    return {*_openai_fields(params, frozenset()),
            *_openai_fields([event], frozenset(), skip=_ENVELOPE)}


def _sources() -> dict[tuple[Kind, Dialect], set[str]]:
    ga_sessions = _union_members(ga_session.SessionUpdateEvent.model_fields["session"].annotation)
    return {
        ("client event", Dialect.GA): _openai_types(GaClientEvent),
        ("client event", Dialect.BETA): _openai_types(BetaClientEvent),
        ("client event", Dialect.VOICE_LIVE): _vl_types(vl.ClientEvent),
        ("server event", Dialect.GA): _openai_types(GaServerEvent),
        ("server event", Dialect.BETA): _openai_types(BetaServerEvent),
        ("server event", Dialect.VOICE_LIVE): _vl_types(vl.ServerEvent),
        # GA's session.update takes a realtime or a transcription session
        ("session", Dialect.GA): set(_openai_fields(ga_sessions, _SECTIONS)),
        # beta's transcription sessions go through the same parser as its sessions
        ("session", Dialect.BETA): set(_openai_fields([beta_session.Session,
                                                       beta_transcription.Session], _SECTIONS)),
        ("session", Dialect.VOICE_LIVE): set(_vl_fields([vl.RequestSession], _SECTIONS)),
        ("response", Dialect.GA): _openai_response(ga_response.ResponseCreateEvent),
        ("response", Dialect.BETA): _openai_response(beta_response.ResponseCreateEvent),
        # Voice Live's `additional_instructions` sits beside `response`, in the event itself
        ("response", Dialect.VOICE_LIVE): {
            *_vl_fields([vl.ResponseCreateParams], frozenset()),
            *_vl_fields([vl.ClientEventResponseCreate], frozenset(), skip=_ENVELOPE)},
    }


def inventory() -> Inventory:
    """(kind, name) -> the dialects whose SDK has it."""
    found: defaultdict[tuple[Kind, str], set[Dialect]] = defaultdict(set)
    for (kind, dialect), names in _sources().items():
        for name in names:
            found[kind, name].add(dialect)
    return {key: frozenset(dialects) for key, dialects in found.items()}


def main() -> None:
    inv = inventory()
    order = {kind: i for i, kind in enumerate(KINDS)}
    for (kind, name), dialects in sorted(inv.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        marks = " ".join(d.value if d in dialects else "-" for d in Dialect)
        print(f"{kind:12}  {name:58}  {marks}")
    counts = {kind: sum(1 for k, _ in inv if k == kind) for kind in KINDS}
    print(", ".join(f"{n} {kind}s" for kind, n in counts.items()))


if __name__ == "__main__":
    main()
