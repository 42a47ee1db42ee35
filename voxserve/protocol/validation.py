"""What the protocol's parsers share: the size limits they enforce, pydantic errors turned into
protocol errors that name the client's parameter, and a guard that lets no other exception out.

Every limit here exists so that one client message cannot end a session, exhaust memory or
reach a model unbounded; each is far above what a real client sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from voxserve.protocol.errors import ErrorCode, ProtocolError

log = logging.getLogger("voxserve.protocol")

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

# JSON nesting, counted before the message is decoded. Tool parameter schemas, the deepest real
# payloads, nest ~10 levels (two JSON levels per schema level) under 4 levels of event; CPython's
# decoder and pydantic both recurse, so a 5000-deep message must never reach them.
MAX_DEPTH = 64
# Fields per JSON object: a session has ~25, a tool schema's `properties` a few dozen. Pydantic
# reports every unknown field of an object, and a million of them took it 10 s.
MAX_KEYS = 256
# Integer literals: no field of the protocol needs more than 64 bits (20 digits); Python's own
# guard only stops at 4300 digits, with a ValueError the decoder would let escape.
MAX_INT_DIGITS = 32

# Instructions (session and response): the default CPU LLM has a 4096-token context (about 16k
# characters of English) and cluster/gpu.yaml 8192. 32k characters (~8k tokens) already fills the
# largest of them, and is far above real system prompts (a few hundred to a few thousand
# characters). It is a bound, not a fit: a prompt under it can still overflow a small context,
# and the LLM then fails that one response, not the session.
MAX_INSTRUCTIONS_CHARS = 32_000
# Item text, transcripts, function arguments and outputs all enter the LLM prompt: the same budget.
MAX_TEXT_CHARS = 32_000
# Every tool's description and schema is in the prompt of every response: a few hundred
# characters is typical, so these caps only stop abuse.
MAX_TOOL_DESCRIPTION_CHARS = 8_000
MAX_TOOL_SCHEMA_CHARS = 16_000  # `parameters`, as compact JSON
MAX_TOOLS = 128  # the OpenAI Chat Completions limit on tools per request
# Client-chosen ids (event, item, response, turn, call ids) and names (model, voice, language):
# ours are ~25 characters, UUIDs 36. They are echoed in errors, so they must stay short.
MAX_NAME_CHARS = 128
# Whisper keeps only the last 224 prompt tokens, so 4000 characters (~1000 tokens) loses nothing;
# the cap spares tokenizing a huge prompt on every transcription.
MAX_TRANSCRIPTION_PROMPT_CHARS = 4_000
MAX_PHRASES = 500
# Response metadata: OpenAI's documented limits (16 pairs, 64-character keys, 512-character values).
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512


# Notices (and refusals) one message produces: a handful of events, then one that sums up the rest
MAX_NOTICES = 8


def capped(items: list[T], summary: Callable[[int], T]) -> list[T]:
    """At most MAX_NOTICES of `items`, the last one `summary(n)` for the n it stands for."""
    if len(items) <= MAX_NOTICES:
        return items
    return items[:MAX_NOTICES - 1] + [summary(len(items) - MAX_NOTICES + 1)]


def noted_fields(noted: Mapping[str, str], raw: Mapping[str, Any],
                 prefix: str) -> list[tuple[str, str]]:
    """(message, param) for each field of `noted` (wire name -> why it has no effect) that
    `raw` sets to anything but null: accepted, and the client is told."""
    return [(f"'{key}' {why}; it was ignored", f"{prefix}.{key}")
            for key, why in noted.items() if raw.get(key) is not None]


def refuse(code: ErrorCode, message: str, at: str = "") -> PydanticCustomError:
    """An error for a validator to raise: pydantic adds the field's location, `at` (".name",
    "[2]") names a part inside the field, and `code` becomes the protocol error code."""
    return PydanticCustomError(code.value, message, {"at": at} if at else None)


_CODES = {code.value: code for code in ErrorCode}
_WHAT = {ErrorCode.INVALID_TYPE: "invalid type for", ErrorCode.UNKNOWN_PARAMETER: "unknown parameter",
         ErrorCode.MISSING_REQUIRED_PARAMETER: "missing required parameter"}


def _first_error(exc: ValidationError) -> tuple[ErrorCode, str, str]:
    """The first pydantic error as (code, location relative to the model, detail)."""
    return _describe(exc.errors()[0])


def _describe(err: Any) -> tuple[ErrorCode, str, str]:
    """One pydantic error as (code, location relative to the model, detail)."""
    # a client's key can be long (an unknown field): the param echoes at most 64 characters of it
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{str(p)[:64]}" for p in err["loc"])
    loc += (err.get("ctx") or {}).get("at", "")
    kind = err["type"]
    if kind in _CODES:  # raised by one of our validators through `refuse`
        return _CODES[kind], loc, err["msg"]
    if kind == "missing":
        return ErrorCode.MISSING_REQUIRED_PARAMETER, loc, ""
    if kind == "extra_forbidden":
        return ErrorCode.UNKNOWN_PARAMETER, loc, ""
    if kind in ("model_type", "dict_type", "model_attributes_type"):  # not our class names
        return ErrorCode.INVALID_TYPE, loc, "must be an object"
    if kind.endswith(("_type", "_parsing")):
        return ErrorCode.INVALID_TYPE, loc, err["msg"]
    return ErrorCode.INVALID_VALUE, loc, err["msg"]


def validation_error(exc: ValidationError, prefix: str) -> ProtocolError:
    """The first pydantic error as a protocol error naming the offending parameter."""
    return error_of(exc.errors()[0], prefix)


def error_of(err: Any, prefix: str) -> ProtocolError:
    """One pydantic error (an item of `ValidationError.errors()`) as a protocol error."""
    code, loc, detail = _describe(err)
    param = f"{prefix}{loc}"
    message = f"{_WHAT.get(code, 'invalid value for')} '{param}'" + (f": {detail}" if detail else "")
    return ProtocolError(code, message, param)


def validated(model: type[M], raw: Any, param: str, context: Any = None) -> M:
    """`model` from the client's `raw`, or a ProtocolError whose param starts with `param`."""
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as exc:
        raise validation_error(exc, param) from None


def nested(model: type[M], raw: Any, at: str = "", context: Any = None) -> M:
    """`model` validated inside another field's validator: its first error is raised again as
    that field's error, with the part's location appended so `param` still points at it."""
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as exc:
        code, loc, detail = _first_error(exc)
        raise refuse(code, detail, f"{at}{loc}") from None


@contextmanager
def no_stray_exceptions(what: str, code: ErrorCode = ErrorCode.SERVER_ERROR) -> Iterator[None]:
    """Whatever goes wrong while parsing `what` leaves as a ProtocolError: a parser bug or an
    input we did not foresee must cost the client one `error` event, never the session."""
    try:
        yield
    except ProtocolError:
        raise
    except Exception as exc:
        log.warning("parsing %s failed unexpectedly", what, exc_info=True)
        detail = str(exc)[:200]
        raise ProtocolError(code, f"could not parse {what}: {type(exc).__name__}: {detail}",
                            type="server_error" if code is ErrorCode.SERVER_ERROR
                            else "invalid_request_error") from None
