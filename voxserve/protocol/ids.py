"""Identifiers for sessions, items, responses and events (prefix + random hex, like the
reference services, so clients that log or pattern-match ids see familiar shapes)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"
