"""The one refusal a parser call produced, raised or (session.update) reported field by field."""

from __future__ import annotations

from typing import Any

import pytest

from voxserve.protocol.errors import ProtocolError
from voxserve.protocol.session_config import UpdateResult


def refused(fn: Any, *args: Any, **kwargs: Any) -> ProtocolError:
    """The error of `fn(*args)`: raised, or the single refused field of a session.update."""
    try:
        result = fn(*args, **kwargs)
    except ProtocolError as err:
        return err
    if not isinstance(result, UpdateResult):
        pytest.fail(f"{getattr(fn, '__name__', fn)} refused nothing")
    assert len(result.errors) == 1, [e.message for e in result.errors]
    return result.errors[0]
