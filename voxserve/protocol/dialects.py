"""The three dialects one server speaks, and how a connection's dialect is chosen."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Dialect(StrEnum):
    GA = "ga"  # openai client.realtime.connect
    BETA = "beta"  # openai client.beta.realtime.connect (OpenAI-Beta: realtime=v1)
    VOICE_LIVE = "voice_live"  # azure-ai-voicelive


OPENAI_PATHS = ("/v1/realtime", "/realtime", "/openai/realtime", "/openai/v1/realtime")
VOICE_LIVE_PATHS = ("/voice-live/realtime",)


def pick_dialect(path: str, headers: Mapping[str, str]) -> Dialect:
    """Voice Live by path; among the OpenAI paths the beta header picks beta, else GA."""
    if path.rstrip("/") in VOICE_LIVE_PATHS:
        return Dialect.VOICE_LIVE
    beta = headers.get("openai-beta", "")
    if "realtime=v1" in beta.replace(" ", "").lower():
        return Dialect.BETA
    return Dialect.GA
