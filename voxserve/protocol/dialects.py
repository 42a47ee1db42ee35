"""The three dialects one server speaks, and how a connection's dialect is chosen.

The choice follows what the hosted services do with the same request, so a client pointed at
VoxServe instead of OpenAI or Azure gets the protocol it was written for (docs/protocol.md,
"Dialects and routes"):

- OpenAI (`/v1/realtime`, and our bare `/realtime`): GA, or beta when the client sends
  `OpenAI-Beta: realtime=v1` (`client.beta.realtime.connect` does).
- Azure OpenAI's dated route `/openai/realtime?api-version=...&deployment=...` serves only the
  preview protocol, which is beta-shaped, and its clients do not all say so: LiveKit's Azure
  mode and the openai SDK's `AsyncAzureOpenAI(...).realtime.connect` send no `OpenAI-Beta`
  header. So there an `api-version` alone means beta. Azure's GA is `/openai/v1/realtime`
  (no `api-version`), which follows the OpenAI rule.
- Azure Voice Live (`/voice-live/realtime`): its own dialect, whatever else the request says.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Dialect(StrEnum):
    GA = "ga"  # openai client.realtime.connect
    BETA = "beta"  # openai client.beta.realtime.connect (OpenAI-Beta: realtime=v1); Azure preview
    VOICE_LIVE = "voice_live"  # azure-ai-voicelive


OPENAI_PATHS = ("/v1/realtime", "/realtime", "/openai/realtime", "/openai/v1/realtime")
VOICE_LIVE_PATHS = ("/voice-live/realtime",)
# Azure OpenAI's deployment-and-api-version route; its GA twin is /openai/v1/realtime.
AZURE_DATED_PATH = "/openai/realtime"


def _get(mapping: Mapping[str, str], name: str) -> str | None:
    """A header or query value by case-insensitive name (Starlette's Headers already are; a
    plain dict, as tests and other callers pass, may not be)."""
    value = mapping.get(name)
    if value is not None:
        return value
    return next((v for k, v in mapping.items() if k.lower() == name), None)


def pick_dialect(path: str, headers: Mapping[str, str],
                 query: Mapping[str, str] | None = None) -> Dialect:
    """The dialect of a connection from its route, `OpenAI-Beta` header and query."""
    route = path.rstrip("/") or "/"
    if route in VOICE_LIVE_PATHS:
        return Dialect.VOICE_LIVE
    beta = _get(headers, "openai-beta") or ""
    if "realtime=v1" in beta.replace(" ", "").lower():
        return Dialect.BETA
    if route == AZURE_DATED_PATH and _get(query or {}, "api-version"):
        return Dialect.BETA
    return Dialect.GA
