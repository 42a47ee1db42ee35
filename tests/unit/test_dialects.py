"""Which dialect a connection gets, from its route, `OpenAI-Beta` header and query string.

The rule (docs/protocol.md, "Dialects and routes") is checked over every combination of the
routes we serve, header variants and query variants, and then on the exact requests that real
clients send (captured from `openai==3.57.0` and `livekit-agents==1.8.9`).
"""

from __future__ import annotations

import itertools
from urllib.parse import urlsplit

import pytest
from starlette.datastructures import Headers, QueryParams

from voxserve.protocol.dialects import Dialect, pick_dialect

pytestmark = pytest.mark.unit

ROUTES = ["/v1/realtime", "/realtime", "/openai/realtime", "/openai/v1/realtime",
          "/voice-live/realtime", "/openai/realtime/", "/v1/realtime/"]
BETA_HEADERS = [{"openai-beta": "realtime=v1"}, {"OpenAI-Beta": "realtime=v1"},
                {"openai-beta": "assistants=v2, realtime=v1"}, {"openai-beta": "Realtime = V1"}]
OTHER_HEADERS: list[dict[str, str]] = [{}, {"openai-beta": "assistants=v2"},
                                       {"api-key": "k"}, {"authorization": "Bearer k"}]
DATED = [{"api-version": "2025-04-01-preview", "deployment": "gpt-4o-realtime-preview"},
         {"api-version": "2024-10-01-preview"}, {"deployment": "d", "api-version": "2025-08-28"}]
UNDATED: list[dict[str, str]] = [{}, {"model": "gpt-realtime"}, {"deployment": "gpt-realtime"},
                                 {"api-version": ""}]


def _expected(route: str, beta_header: bool, dated: bool) -> Dialect:
    route = route.rstrip("/")
    if route == "/voice-live/realtime":
        return Dialect.VOICE_LIVE  # Voice Live's route decides, whatever else is sent
    if beta_header:
        return Dialect.BETA  # the OpenAI rule, on every OpenAI-shaped route
    if route == "/openai/realtime" and dated:
        return Dialect.BETA  # Azure's dated route only serves the preview (beta) protocol
    return Dialect.GA


@pytest.mark.parametrize(("route", "headers", "query"), list(itertools.product(
    ROUTES, BETA_HEADERS + OTHER_HEADERS, DATED + UNDATED)))
def test_every_route_header_and_query_combination(route: str, headers: dict[str, str],
                                                  query: dict[str, str]) -> None:
    want = _expected(route, headers in BETA_HEADERS, query in DATED)
    assert pick_dialect(route, headers, query) is want
    # the types the ingress passes (case-insensitive headers, a query multi-dict) agree
    assert pick_dialect(route, Headers(headers), QueryParams(query)) is want


def test_the_query_is_optional_for_callers_that_have_none() -> None:
    assert pick_dialect("/openai/realtime", {}) is Dialect.GA
    assert pick_dialect("/openai/realtime", {"openai-beta": "realtime=v1"}) is Dialect.BETA


def _request(url: str) -> tuple[str, QueryParams]:
    parts = urlsplit(url)
    return parts.path, QueryParams(parts.query)


# (client, URL it opens, headers it sends that matter here, dialect it speaks)
REAL_CLIENTS = [
    ("openai AsyncOpenAI.realtime.connect", "/v1/realtime?model=gpt-realtime",
     {"authorization": "Bearer k"}, Dialect.GA),
    ("openai AsyncOpenAI.beta.realtime.connect", "/v1/realtime?model=gpt-4o-realtime-preview",
     {"authorization": "Bearer k", "openai-beta": "realtime=v1"}, Dialect.BETA),
    ("openai AsyncAzureOpenAI.beta.realtime.connect",
     "/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-4o-realtime-preview",
     {"api-key": "k", "openai-beta": "realtime=v1"}, Dialect.BETA),
    # the GA resource of the Azure client opens the dated route without the beta header;
    # Azure answers it in the preview protocol, and so do we
    ("openai AsyncAzureOpenAI.realtime.connect",
     "/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-4o-realtime-preview",
     {"api-key": "k"}, Dialect.BETA),
    ("openai AsyncOpenAI on Azure GA (websocket_base_url .../openai/v1)",
     "/openai/v1/realtime?model=gpt-realtime", {"authorization": "Bearer k"}, Dialect.GA),
    ("livekit RealtimeModel(base_url=.../v1)", "/v1/realtime?model=gpt-realtime",
     {"authorization": "Bearer k", "user-agent": "LiveKit Agents"}, Dialect.GA),
    ("livekit RealtimeModel.with_azure(api_version=...)",
     "/openai/realtime?api-version=2024-10-01-preview&deployment=gpt-realtime",
     {"api-key": "k", "user-agent": "LiveKit Agents"}, Dialect.BETA),
    ("livekit RealtimeModel.with_azure() without api_version",
     "/openai/v1/realtime?model=gpt-realtime", {"api-key": "k"}, Dialect.GA),
    ("azure-ai-voicelive connect", "/voice-live/realtime?api-version=2026-07-15&model=gpt-4o",
     {"api-key": "k"}, Dialect.VOICE_LIVE),
]


@pytest.mark.parametrize(("client", "url", "headers", "dialect"), REAL_CLIENTS,
                         ids=[c[0] for c in REAL_CLIENTS])
def test_real_clients_get_the_dialect_they_speak(client: str, url: str, headers: dict[str, str],
                                                 dialect: Dialect) -> None:
    path, query = _request(url)
    assert pick_dialect(path, Headers(headers), query) is dialect, client
