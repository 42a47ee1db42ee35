"""Strict checks of server events against the official SDKs' own models.

Neither SDK validates what it receives (openai builds unknown shapes unchecked; the Voice Live
client falls back to a base class), so the tests do it: openai events are validated with
pydantic `model_validate` on the class their `type` names (GA or beta union); Voice Live events
are checked for every field its SDK model types as required, recursively, with simple types.
"""

from __future__ import annotations

import re
import typing
from typing import Any

from azure.ai.voicelive.models import _models as vl_models
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent as GaServerEvent

from voxserve.protocol.dialects import Dialect


def _class_map(union: Any) -> dict[str, type]:
    args = typing.get_args(union)
    if typing.get_origin(union) is typing.Annotated:
        args = typing.get_args(args[0])
    out: dict[str, type] = {}
    for cls in args:
        literal = typing.get_args(cls.model_fields["type"].annotation)[0]
        out.setdefault(literal, cls)
    return out


_GA = _class_map(GaServerEvent)
_BETA = _class_map(BetaServerEvent)
_VL = dict(vl_models.ServerEvent.__mapping__)


def check_event(event: dict[str, Any], dialect: Dialect) -> None:
    """Raise AssertionError if `event` is not a valid event of `dialect`."""
    kind = event.get("type")
    assert isinstance(event.get("event_id"), str) and event["event_id"], f"no event_id: {event}"
    if dialect is Dialect.VOICE_LIVE:
        cls = _VL.get(kind)
        assert cls is not None, f"{kind!r} is not a Voice Live server event"
        problems = _vl_problems(cls, event, "")
        assert not problems, f"{kind}: {problems}"
        return
    table = _GA if dialect is Dialect.GA else _BETA
    if dialect is Dialect.BETA and isinstance(event.get("session"), dict):
        # The beta model types session.model as a Literal of OpenAI's model names; ours names
        # whatever model the server runs, so only that one field is exempt.
        event = {**event, "session": {**event["session"], "model": "gpt-4o-realtime-preview"}}
    cls = table.get(kind)
    assert cls is not None, f"{kind!r} is not an openai {dialect.value} server event"
    cls.model_validate(event)  # type: ignore[attr-defined]


def _annotations(cls: type) -> dict[str, str]:
    anns: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for name, ann in getattr(klass, "__annotations__", {}).items():
            if not name.startswith("_"):
                anns[name] = str(ann)
    return anns


def _rest_names(cls: type) -> dict[str, str]:
    probe = cls.__new__(cls)
    mapping = getattr(probe, "_attr_to_rest_field", None) or {}
    return {attr: getattr(field, "_rest_name", attr) for attr, field in mapping.items()}


_SIMPLE = {"int": int, "str": str, "bool": bool, "float": (int, float)}


def _vl_problems(cls: type, data: Any, path: str) -> list[str]:
    if not isinstance(data, dict):
        return [f"{path or '.'} is not an object"]
    mapping = getattr(cls, "__mapping__", None)
    if mapping and isinstance(data.get("type"), str) and data["type"] in mapping:
        cls = mapping[data["type"]]
    problems: list[str] = []
    rest = _rest_names(cls)
    for attr, ann in _annotations(cls).items():
        name = rest.get(attr, attr)
        optional = "Optional" in ann or "None" in ann
        if name not in data or data[name] is None:
            if not optional:
                problems.append(f"missing {path}{name}")
            continue
        value = data[name]
        simple = re.fullmatch(r"<class '(\w+)'>|(\w+)", ann.strip("'\""))
        bare = simple and (simple.group(1) or simple.group(2))
        if bare in _SIMPLE and not isinstance(value, _SIMPLE[bare]):
            problems.append(f"{path}{name} should be {bare}, got {type(value).__name__}")
        model = re.search(r"_models\.(\w+)", ann)
        if model is None or not hasattr(vl_models, model.group(1)):
            continue
        nested = getattr(vl_models, model.group(1))
        if not isinstance(nested, type) or not hasattr(nested, "_attr_to_rest_field") and \
                not hasattr(nested, "__mapping__") and not _annotations(nested):
            continue
        if "list[" in ann and isinstance(value, list):
            for i, v in enumerate(value):
                problems += _vl_problems(nested, v, f"{path}{name}[{i}].")
        elif isinstance(value, dict):
            problems += _vl_problems(nested, value, f"{path}{name}.")
    return problems
