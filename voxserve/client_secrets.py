"""`POST /v1/realtime/client_secrets`: a short-lived secret a browser may hold, and the session
configuration it is scoped to.

The request and response follow the GA API (openai 3.57.0, `client_secret_create_params.py` and
`client_secret_create_response.py`): `{"expires_after": {"anchor": "created_at", "seconds": N},
"session": {...}}` in, `{"value": "ek_...", "expires_at": ..., "session": {...}}` out.

The scope rule, kept simple: the `session` given at mint time (GA shape, whatever dialect the
secret is later used on) is the initial configuration of every session opened with the secret,
and its model (the `model` given, else the server's `session.model_name`) is that session's
model for its whole life. A connect URL naming another model is refused; a later
`session.update` may change anything else, and its echo shows the model unchanged.
"""

from __future__ import annotations

from typing import Any

from voxserve.auth import ClientSecret, expiry_seconds, mint_token
from voxserve.config import SessionOptions
from voxserve.protocol.dialects import Dialect
from voxserve.protocol.errors import ProtocolError
from voxserve.protocol.ids import new_id
from voxserve.protocol.session_config import SessionConfig, VoiceTable, render_session
from voxserve.protocol.session_update import apply_update


def base_config(options: SessionOptions, model: str | None,
                transcription_only: bool) -> SessionConfig:
    """A new session's configuration before any client change (what RealtimeSession starts
    from when no secret scopes it)."""
    return SessionConfig(model=model or options.model_name, voice=options.default_voice,
                         transcription_only=transcription_only).effective()


def scoped_config(scope: dict[str, Any], options: SessionOptions, model: str | None = None,
                  transcription_only: bool = False) -> SessionConfig:
    """The configuration a secret's `session` gives; ValueError naming each refused field."""
    voices = VoiceTable(options.voices, options.default_voice, options.strict_voices)
    base = base_config(options, model, transcription_only)
    try:
        result = apply_update(base, scope, Dialect.GA, voices, audio_started=False)
    except ProtocolError as err:
        raise ValueError(f"{err.param or 'session'}: {err.message}") from None
    if result.errors:
        raise ValueError("; ".join(f"{e.param}: {e.message}" for e in result.errors))
    return result.config


def scoped_model(scope: dict[str, Any]) -> str | None:
    model = scope.get("model")
    return model if isinstance(model, str) and model else None


def create(body: Any, key: str, options: SessionOptions, now: float) -> dict[str, Any]:
    """The response to a `client_secrets` request; ValueError is a 400 with its message."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    if unknown := sorted(set(body) - {"expires_after", "session"}):
        raise ValueError(f"unknown field {unknown[0]!r}")
    seconds = expiry_seconds(body.get("expires_after"))
    scope = body.get("session") or {}
    if not isinstance(scope, dict):
        raise ValueError("session must be an object")
    config = scoped_config(scope, options)  # refused now, not when a browser connects
    secret: ClientSecret = mint_token(key, scope, seconds, now)
    return {"value": secret.value, "expires_at": secret.expires_at,
            "session": render_session(config, Dialect.GA, new_id("sess"), secret.expires_at)}
