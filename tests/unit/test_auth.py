"""Who may connect: credential places, client secrets (mint, verify, expiry, tampering, scope),
key sources, subprotocol answers, the Origin rule and the TLS wiring of `voxserve serve`."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from voxserve import client_secrets
from voxserve.auth import (
    Credential, TokenError, chosen_subprotocol, expiry_seconds, is_key, mint_token,
    origin_allowed, parse_subprotocols, presented_credential, verify_token,
)
from voxserve.cli import http_options
from voxserve.config import OptionsError, SessionOptions, load_options, with_environment_keys

pytestmark = pytest.mark.unit
NOW = 1_750_000_000.0


# ---- where a credential is -------------------------------------------------------------------


def test_credential_from_each_place_and_the_header_wins() -> None:
    assert presented_credential({"api-key": "k1"}, {}, []) == Credential("k1", "header")
    assert presented_credential({"authorization": "Bearer k2"}, {}, []) == Credential("k2", "header")
    assert presented_credential({"authorization": "bearer  k2 "}, {}, []) == Credential("k2", "header")
    assert presented_credential({}, {"api-key": "k3"}, []) == Credential("k3", "query")
    offered = parse_subprotocols("realtime, openai-insecure-api-key.k4, openai-beta.realtime-v1")
    assert presented_credential({}, {}, offered) == Credential("k4", "subprotocol")
    assert presented_credential({"api-key": "h"}, {"api-key": "q"}, offered) == Credential("h", "header")


def test_no_credential_in_basic_auth_an_empty_bearer_or_a_bare_prefix() -> None:
    assert presented_credential({"authorization": "Basic dTpw"}, {}, []) is None
    assert presented_credential({"authorization": "Bearer "}, {}, []) is None
    assert presented_credential({}, {"key": "k"}, ["openai-insecure-api-key."]) is None


def test_subprotocols_parse_and_the_answer_is_realtime_only_when_offered() -> None:
    assert parse_subprotocols(None) == []
    assert parse_subprotocols(" realtime ,openai-insecure-api-key.ek_a.b,") == [
        "realtime", "openai-insecure-api-key.ek_a.b"]
    assert chosen_subprotocol(["realtime", "openai-insecure-api-key.k"]) == "realtime"
    assert chosen_subprotocol(["openai-insecure-api-key.k"]) is None
    assert chosen_subprotocol([]) is None


def test_key_match_is_exact() -> None:
    assert is_key("abc", ["x", "abc"])
    assert not is_key("ab", ["abc"]) and not is_key("abcd", ["abc"]) and not is_key("abc", [])


# ---- client secrets --------------------------------------------------------------------------


def test_a_minted_secret_verifies_until_it_expires() -> None:
    secret = mint_token("key-1", {"instructions": "hi"}, 60, NOW)
    assert secret.value.startswith("ek_") and secret.expires_at == int(NOW) + 60
    # base64url without padding and a dot: every character a subprotocol token may hold
    assert set(secret.value) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789-_.")
    got = verify_token(secret.value, ["other", "key-1"], NOW + 59)
    assert got.session == {"instructions": "hi"} and got.expires_at == secret.expires_at
    with pytest.raises(TokenError, match="expired"):
        verify_token(secret.value, ["key-1"], NOW + 60)


def test_a_secret_signed_by_no_configured_key_is_refused() -> None:
    secret = mint_token("removed-key", {}, 60, NOW)
    with pytest.raises(TokenError, match="invalid"):
        verify_token(secret.value, ["key-1"], NOW)


def test_a_tampered_secret_is_refused() -> None:
    secret = mint_token("key-1", {"model": "a"}, 60, NOW)
    payload, _, signature = secret.value.removeprefix("ek_").partition(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["exp"] += 3600  # a longer life, same signature
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    for value in (f"ek_{forged}.{signature}", secret.value[:-2] + "AA", secret.value + "x",
                  f"ek_{payload}", "ek_", "ek_.sig"):
        with pytest.raises(TokenError):
            verify_token(value, ["key-1"], NOW)


def test_expiry_follows_the_ga_bounds() -> None:
    assert expiry_seconds(None) == 600
    assert expiry_seconds({"anchor": "created_at", "seconds": 10}) == 10
    assert expiry_seconds({"seconds": 7200}) == 7200
    for bad in ({"seconds": 9}, {"seconds": 7201}, {"seconds": "60"}, {"seconds": True},
                {"anchor": "now", "seconds": 60}, [60]):
        with pytest.raises(ValueError):
            expiry_seconds(bad)


def test_create_answers_in_the_sdk_response_shape() -> None:
    from openai.types.realtime import ClientSecretCreateResponse

    body = {"expires_after": {"anchor": "created_at", "seconds": 120},
            "session": {"type": "realtime", "model": "gpt-realtime", "instructions": "Be brief.",
                        "audio": {"output": {"voice": "marin"}}}}
    out = client_secrets.create(body, "key-1", SessionOptions(), NOW)
    parsed = ClientSecretCreateResponse.model_validate(out)
    assert parsed.expires_at == int(NOW) + 120 and parsed.value.startswith("ek_")
    assert parsed.session.type == "realtime"
    assert out["session"]["model"] == "gpt-realtime"
    assert out["session"]["instructions"] == "Be brief."
    assert verify_token(out["value"], ["key-1"], NOW).session == body["session"]


def test_create_refuses_a_bad_session_or_body_before_minting() -> None:
    for body in ({"session": {"type": "realtime", "audio": {"output": {"speed": 99}}}},
                 {"session": {"type": "chat"}}, {"session": "x"}, {"expires_at": 5}, [1]):
        with pytest.raises(ValueError):
            client_secrets.create(body, "key-1", SessionOptions(), NOW)


def test_a_secret_too_long_for_a_header_is_refused_at_mint() -> None:
    with pytest.raises(ValueError, match="session.update"):
        client_secrets.create({"session": {"instructions": "x" * 5000}}, "k", SessionOptions(), NOW)


def test_the_scope_is_the_initial_config_and_names_the_model() -> None:
    scope = {"type": "realtime", "model": "gpt-realtime-mini", "instructions": "Speak French."}
    cfg = client_secrets.scoped_config(scope, SessionOptions(), model="gpt-realtime")
    assert cfg.model == "gpt-realtime-mini" and cfg.instructions == "Speak French."
    assert client_secrets.scoped_model(scope) == "gpt-realtime-mini"
    unscoped = client_secrets.scoped_config({}, SessionOptions(), model="gpt-realtime")
    assert unscoped == client_secrets.base_config(SessionOptions(), "gpt-realtime", False)
    assert client_secrets.scoped_model({}) is None
    tx = client_secrets.scoped_config({"type": "transcription"}, SessionOptions())
    assert tx.transcription_only


async def test_a_session_update_cannot_change_a_scoped_sessions_model() -> None:
    from tests.unit.fakes import EnergyVad, FakePipeline
    from voxserve.config import VadOptions
    from voxserve.protocol.dialects import Dialect
    from voxserve.session.session import RealtimeSession

    update = json.dumps({"type": "session.update", "session": {
        "type": "realtime", "model": "other", "instructions": "changed"}})
    initial = client_secrets.scoped_config({"model": "pinned"}, SessionOptions())
    scoped = RealtimeSession(Dialect.GA, FakePipeline(), EnergyVad, SessionOptions(),
                             VadOptions(), initial_config=initial)
    await scoped.handle_message(update)
    assert scoped.config.model == "pinned" and scoped.config.instructions == "changed"
    free = RealtimeSession(Dialect.GA, FakePipeline(), EnergyVad, SessionOptions(), VadOptions())
    await free.handle_message(update)
    assert free.config.model == "other"


# ---- Origin ----------------------------------------------------------------------------------


def test_origin_rules() -> None:
    allowed = ["https://app.example.com", "http://localhost:3000/"]
    assert origin_allowed(None, allowed)  # not a browser
    assert origin_allowed("https://evil.example", [])  # no list: no check
    assert origin_allowed("https://APP.example.com", allowed)
    assert origin_allowed("http://localhost:3000", allowed)
    assert not origin_allowed("https://app.example.com.evil.example", allowed)
    assert not origin_allowed("http://app.example.com", allowed)  # scheme matters
    assert not origin_allowed("null", allowed)
    assert origin_allowed("https://anything", ["*"])
    # the server's own page: Origin names the host the request came to
    assert origin_allowed("http://127.0.0.1:8000", allowed, host="127.0.0.1:8000")
    assert not origin_allowed("http://127.0.0.1:8001", allowed, host="127.0.0.1:8000")
    assert not origin_allowed("https://evil.example", allowed, host="127.0.0.1:8000")


# ---- key sources and TLS options -------------------------------------------------------------


def test_keys_from_the_environment_join_the_files_and_are_never_in_repr() -> None:
    opts = load_options(data={"server": {"api_keys": ["file-key"]}})
    merged = with_environment_keys(opts, {"VOXSERVE_API_KEYS": " env-1, ,env-2,file-key"})
    assert merged.server.api_keys == ["file-key", "env-1", "env-2"]
    assert opts.server.api_keys == ["file-key"]  # the original is not changed
    assert with_environment_keys(opts, {}) is opts
    assert "env-1" not in repr(merged) and "env-1" not in str(merged.server)
    env_only = with_environment_keys(load_options(data={"server": {"host": "0.0.0.0"}}),
                                     {"VOXSERVE_API_KEYS": "k"})
    assert env_only.server.auth_required() and env_only.server.api_keys == ["k"]


def test_a_key_may_not_look_like_a_client_secret() -> None:
    with pytest.raises(OptionsError, match="ek_"):
        load_options(data={"server": {"api_keys": ["ek_abc"]}})


def test_tls_files_go_together_and_reach_serves_http_options(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="go together"):
        load_options(data={"server": {"ssl_certfile": "c.pem"}})
    with pytest.raises(OptionsError, match="HAProxy"):
        load_options(data={"server": {"ssl_certfile": "c", "ssl_keyfile": "k", "proxy": "haproxy"}})
    assert http_options(load_options()) == {"host": "127.0.0.1", "port": 8000}
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    opts = load_options(data={"server": {"ssl_certfile": str(cert), "ssl_keyfile": str(key),
                                         "port": 8443}})
    out = http_options(opts)
    assert out == {"host": "127.0.0.1", "port": 8443, "ssl_certfile": str(cert),
                   "ssl_keyfile": str(key)}
    from ray.serve.config import HTTPOptions

    cert.write_text("x")
    key.write_text("x")
    assert HTTPOptions(**out).ssl_certfile == str(cert)  # Serve 2.60 takes these names


def test_serve_refuses_a_lone_tls_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from voxserve.cli import main

    assert main(["serve", "--ssl-certfile", "c.pem"]) == 2
    assert "go together" in capsys.readouterr().err
