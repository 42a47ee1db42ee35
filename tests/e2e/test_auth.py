"""Who may connect, over the real server: every credential form a client sends, client secrets
minted through the official SDK and refused when expired or tampered with, and the Origin
allow-list. Each refusal is an HTTP status before the upgrade, with its reason as the body."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from tests.e2e.conftest import ALLOWED_ORIGIN, Server
from voxserve.auth import mint_token

pytestmark = pytest.mark.e2e


async def _created(url: str, **kwargs: Any) -> tuple[dict[str, Any], str | None]:
    """`session.created` of a new socket, and the subprotocol the server chose."""
    async with websockets.connect(url, **kwargs) as ws:
        event = json.loads(await asyncio.wait_for(ws.recv(), 60))
        assert event["type"] == "session.created", event
        return event, ws.subprotocol


async def _refused(url: str, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(url, **kwargs):
            pass
    response = info.value.response
    return response.status_code, (response.body or b"").decode()


def _post(server: Server, body: Any, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(f"{server.http}/v1/realtime/client_secrets",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _url(server: Server, query: str = "") -> str:
    return f"{server.ws}/v1/realtime?model=gpt-realtime{query}"


async def test_no_key_and_a_wrong_key_are_refused_before_the_upgrade(server: Server) -> None:
    status, body = await _refused(_url(server))
    assert status == 401 and body.startswith("missing API key") and "api-key" in body
    for kwargs in ({"additional_headers": {"api-key": "wrong"}},
                   {"additional_headers": {"Authorization": "Bearer wrong"}},
                   {"subprotocols": ["realtime", "openai-insecure-api-key.wrong"]}):
        assert await _refused(_url(server), **kwargs) == (401, "invalid API key")
    assert await _refused(_url(server, "&api-key=wrong")) == (401, "invalid API key")


async def test_a_key_in_a_header_the_query_or_a_subprotocol_opens_a_session(server: Server) -> None:
    key = server.api_key
    for kwargs in ({"additional_headers": {"api-key": key}},
                   {"additional_headers": {"Authorization": f"Bearer {key}"}}):
        _, chosen = await _created(_url(server), **kwargs)
        assert chosen is None  # nothing offered, nothing answered
    _, chosen = await _created(_url(server, f"&api-key={key}"))
    assert chosen is None
    # what the `openai` npm package's browser WebSocket offers; the answer must be one of them
    offered = ["realtime", f"openai-insecure-api-key.{key}", "openai-beta.realtime-v1"]
    _, chosen = await _created(_url(server), subprotocols=offered)
    assert chosen == "realtime"


async def test_an_expired_or_tampered_client_secret_is_refused(server: Server) -> None:
    # minted an hour ago for ten seconds, with the server's own key: expired, never slept for
    expired = mint_token(server.api_key, {}, 10, time.time() - 3600).value
    assert await _refused(_url(server), additional_headers={"Authorization": f"Bearer {expired}"}
                          ) == (401, "client secret expired")
    fresh = mint_token(server.api_key, {}, 600, time.time()).value
    tampered = fresh[:-3] + ("AAA" if not fresh.endswith("AAA") else "BBB")
    assert await _refused(_url(server), subprotocols=[
        "realtime", f"openai-insecure-api-key.{tampered}"]) == (401, "invalid client secret")
    foreign = mint_token("not-a-server-key", {}, 600, time.time()).value
    assert await _refused(_url(server, f"&api-key={foreign}")) == (401, "invalid client secret")


async def test_a_secret_minted_through_the_sdk_scopes_the_session(server: Server) -> None:
    from openai import AsyncOpenAI

    minter = AsyncOpenAI(api_key=server.api_key, base_url=f"{server.http}/v1")
    secret = await minter.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 120},
        session={"type": "realtime", "model": "gpt-realtime",
                 "instructions": "You are a pirate. Keep answers short."})
    assert secret.value.startswith("ek_")
    assert 110 <= secret.expires_at - time.time() <= 121
    assert secret.session.type == "realtime"
    # the browser's side, with nothing but the secret: the SDK sends it as a bearer token
    client = AsyncOpenAI(api_key=secret.value, websocket_base_url=f"{server.ws}/v1")
    async with client.realtime.connect(model="gpt-realtime") as conn:
        created = json.loads(await asyncio.wait_for(conn.recv_bytes(), 60))
        assert created["type"] == "session.created"
        assert created["session"]["instructions"] == "You are a pirate. Keep answers short."
        assert created["session"]["model"] == "gpt-realtime"
        await conn.session.update(session={"type": "realtime", "model": "other-model",
                                           "instructions": "Be plain."})
        while (event := json.loads(await asyncio.wait_for(conn.recv_bytes(), 60)))["type"] \
                != "session.updated":
            pass
        assert event["session"]["instructions"] == "Be plain."
        assert event["session"]["model"] == "gpt-realtime"  # the scope's model stays
    # the same secret in the browser's subprotocol slot
    _, chosen = await _created(_url(server), subprotocols=[
        "realtime", f"openai-insecure-api-key.{secret.value}"])
    assert chosen == "realtime"
    # a URL naming another model than the secret's
    status, body = await _refused(f"{server.ws}/v1/realtime?model=gpt-4o-realtime-preview",
                                  additional_headers={"api-key": secret.value})
    assert status == 403 and "gpt-realtime" in body


def test_minting_needs_a_real_key_and_a_valid_request(server: Server) -> None:
    status, body = _post(server, {}, {})
    assert status == 401 and body.startswith("missing API key")
    assert _post(server, {}, {"Authorization": "Bearer wrong"}) == (401, "invalid API key")
    secret = mint_token(server.api_key, {}, 600, time.time()).value
    status, body = _post(server, {}, {"Authorization": f"Bearer {secret}"})
    assert status == 403 and "API key" in body
    status, body = _post(server, {"expires_after": {"seconds": 5}},
                         {"api-key": server.api_key})
    assert status == 400 and "expires_after.seconds" in body
    status, body = _post(server, {"session": {"type": "chat"}}, {"api-key": server.api_key})
    assert status == 400 and "session.type" in body
    status, body = _post(server, {}, {"api-key": server.api_key})
    assert status == 200 and json.loads(body)["value"].startswith("ek_")


async def test_a_browser_origin_outside_the_allow_list_is_refused(server: Server) -> None:
    key = server.api_key
    status, body = await _refused(_url(server, f"&api-key={key}"),
                                  origin=Origin("https://evil.example"))
    assert status == 403 and "https://evil.example" in body and "allowed_origins" in body
    # refused on Origin even without a key: the page learns nothing about keys
    status, _ = await _refused(_url(server), origin=Origin("https://evil.example"))
    assert status == 403
    await _created(_url(server, f"&api-key={key}"), origin=Origin(ALLOWED_ORIGIN))
