"""Who may open a session: the credential a client presents, short-lived client secrets, and the
browser `Origin` rule. Ray-free, so each rule is unit-tested alone; the ingress applies them
before the WebSocket upgrade.

Where a credential can be (first found wins):
- `api-key: <key>` or `Authorization: Bearer <key>` headers (server clients, the SDKs);
- `?api-key=<key>` in the query string (Azure's browser form: browsers cannot set WebSocket
  headers);
- the `openai-insecure-api-key.<key>` WebSocket subprotocol, next to `realtime`, which is what the
  `openai` npm package's browser WebSocket client offers
  (`realtime, openai-insecure-api-key.<key>[, openai-beta.realtime-v1]`); the same slot carries
  an ephemeral `ek_...` secret.

A client secret (`ek_...`) is self-contained: `ek_<payload>.<signature>`, both base64url without
padding, the payload the JSON `{"v", "iat", "exp", "session"}` and the signature its HMAC-SHA256
under the API key that minted it. Any ingress replica holding the same keys verifies it with no
shared store, and removing a key from the options revokes every secret it minted. The payload is
signed, not encrypted: a client can read the session configuration in it, and nothing secret
belongs there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The subprotocol that carries a credential, and the one the server answers with: a browser that
# offered subprotocols fails the handshake unless the answer names one of them.
KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
REALTIME_SUBPROTOCOL = "realtime"
QUERY_KEY_PARAM = "api-key"
TOKEN_PREFIX = "ek_"
# The GA `expires_after.seconds` bounds (openai 3.57.0, client_secret_create_params.py)
MIN_TOKEN_SECONDS, MAX_TOKEN_SECONDS, DEFAULT_TOKEN_SECONDS = 10, 7200, 600
# A secret travels in a URL or a subprotocol header: past a few KB proxies and servers refuse the
# request line or header (uvicorn's h11 limit is 16 KB for all headers together).
MAX_TOKEN_CHARS = 4096
_TOKEN_VERSION = 1


@dataclass(frozen=True)
class Credential:
    value: str
    via: str  # "header", "query" or "subprotocol": for the log line, never the value


def parse_subprotocols(header: str | None) -> list[str]:
    """`Sec-WebSocket-Protocol` as the list the client offered (comma separated, RFC 6455)."""
    return [p.strip() for p in (header or "").split(",") if p.strip()]


def presented_credential(headers: Mapping[str, str], query: Mapping[str, str],
                         subprotocols: Sequence[str]) -> Credential | None:
    """The credential the client sent, from the first place that holds one."""
    if key := headers.get("api-key", "").strip():
        return Credential(key, "header")
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return Credential(auth[7:].strip(), "header")
    if key := query.get(QUERY_KEY_PARAM, "").strip():
        return Credential(key, "query")
    for proto in subprotocols:
        if proto.startswith(KEY_SUBPROTOCOL_PREFIX) and proto[len(KEY_SUBPROTOCOL_PREFIX):]:
            return Credential(proto[len(KEY_SUBPROTOCOL_PREFIX):], "subprotocol")
    return None


def chosen_subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol to answer the upgrade with: `realtime` when offered, else none (a client
    that offered only others gets no subprotocol, as RFC 6455 allows; browsers then fail)."""
    return REALTIME_SUBPROTOCOL if REALTIME_SUBPROTOCOL in offered else None


def is_key(value: str, keys: Sequence[str]) -> bool:
    """Constant-time membership: every key is compared, whichever matches."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(value.encode(), key.encode())
    return found


def origin_allowed(origin: str | None, allowed: Sequence[str], host: str | None = None) -> bool:
    """Browsers always send `Origin` on a WebSocket; other clients usually do not. No Origin, or
    an empty allow-list, passes: the list guards against other web pages, the key against the
    rest. Entries compare case-insensitively without a trailing slash; `*` allows any. The
    server's own page (Origin naming the `Host` the request came to) always passes: it is
    VoxServe's, and it still needs a key off loopback."""
    if origin is None or not allowed:
        return True
    norm = origin.strip().rstrip("/").lower()
    if host and norm.split("://", 1)[-1] == host.strip().lower():
        return True
    return any(a == "*" or a.strip().rstrip("/").lower() == norm for a in allowed)


# ---- client secrets --------------------------------------------------------------------------


class TokenError(ValueError):
    """A secret that is malformed, tampered with, signed by no configured key, or expired. The
    message is the plain-text reason sent to the client."""


@dataclass(frozen=True)
class ClientSecret:
    value: str
    created_at: int
    expires_at: int
    session: dict[str, Any] = field(default_factory=dict)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: str, payload: str) -> str:
    return _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())


def expiry_seconds(expires_after: Any) -> int:
    """`expires_after` of a `client_secrets` request, checked as the GA API documents it."""
    if expires_after is None:
        return DEFAULT_TOKEN_SECONDS
    if not isinstance(expires_after, dict):
        raise ValueError("expires_after must be an object")
    if expires_after.get("anchor", "created_at") != "created_at":
        raise ValueError("expires_after.anchor must be 'created_at'")
    seconds = expires_after.get("seconds", DEFAULT_TOKEN_SECONDS)
    if isinstance(seconds, bool) or not isinstance(seconds, int) \
            or not MIN_TOKEN_SECONDS <= seconds <= MAX_TOKEN_SECONDS:
        raise ValueError(f"expires_after.seconds must be an integer from {MIN_TOKEN_SECONDS} "
                         f"to {MAX_TOKEN_SECONDS}")
    return seconds


def mint_token(key: str, session: dict[str, Any], seconds: int, now: float) -> ClientSecret:
    """A secret valid for `seconds` from `now`, carrying `session` as its scope."""
    created = int(now)
    body = {"v": _TOKEN_VERSION, "iat": created, "exp": created + seconds, "session": session}
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    value = f"{TOKEN_PREFIX}{payload}.{_signature(key, payload)}"
    if len(value) > MAX_TOKEN_CHARS:
        raise ValueError(f"the session configuration makes a secret of {len(value)} characters "
                         f"(at most {MAX_TOKEN_CHARS}: it travels in a URL or a header); send "
                         "long instructions or tools with session.update after connecting")
    return ClientSecret(value, created, created + seconds, session)


def is_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX)


def verify_token(value: str, keys: Sequence[str], now: float) -> ClientSecret:
    """The secret's contents when one of `keys` signed it and it has not expired."""
    payload, dot, signature = value.removeprefix(TOKEN_PREFIX).partition(".")
    if not is_token(value) or not dot or not payload or not signature:
        raise TokenError("malformed client secret")
    signed = False
    for key in keys:  # every key is tried, so timing does not tell which one signed it
        signed |= hmac.compare_digest(_signature(key, payload).encode(), signature.encode())
    if not signed:
        raise TokenError("invalid client secret")
    try:
        body = json.loads(_unb64(payload))
        created, expires, session = int(body["iat"]), int(body["exp"]), body["session"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:  # signed but unreadable
        raise TokenError("malformed client secret") from exc
    if body.get("v") != _TOKEN_VERSION or not isinstance(session, dict):
        raise TokenError("malformed client secret")
    if now >= expires:
        raise TokenError("client secret expired")
    return ClientSecret(value, created, expires, session)
