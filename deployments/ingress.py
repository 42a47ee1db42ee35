"""The WebSocket ingress: routes, auth (voxserve/auth.py), client secrets, dialect choice and one
`RealtimeSession` per socket.

Each WebSocket is one long ASGI request, so a session stays on the replica that accepted it and
this replica owns the session's streaming state and its cancellation.
"""

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.websockets import WebSocketDisconnect, WebSocketState

from voxserve import client_secrets, page, process_stats
from voxserve.auth import (
    ClientSecret, TokenError, chosen_subprotocol, is_key, is_token, origin_allowed,
    parse_subprotocols, presented_credential, verify_token,
)
from voxserve.config import VoxServeOptions
from voxserve.protocol.dialects import Dialect, pick_dialect
from voxserve.protocol.session_config import SessionConfig
from voxserve.session.session import RealtimeSession
from voxserve.deployments.admission import Admission
from voxserve.deployments.logs import route_to_serve_log
from voxserve.deployments.metrics import RayMetricsObserver
from voxserve.deployments.serve_pipeline import ServePipeline
from voxserve.knowledge.setup import knowledge_tool

log = logging.getLogger("voxserve.ingress")

app = FastAPI(title="VoxServe")

# Voice Live's agent-mode query parameters (a Foundry agent instead of a model)
_AGENT_PARAMS = ("agent-name", "agent_name", "agent-id", "agent_id", "agent-project-name")


class _WebSocketTransport:
    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def receive(self) -> str | bytes | None:
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    async def send(self, text: str) -> None:
        await self._ws.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        if self._ws.client_state is WebSocketState.CONNECTED:
            await self._ws.close(code, reason)


@dataclass(frozen=True)
class _Refusal:
    status: int
    reason: str


@dataclass(frozen=True)
class _Grant:
    key: str | None  # the configured key presented, if one was
    secret: ClientSecret | None  # the client secret presented, if one was


def _expected_credential() -> str:
    return ("missing API key: send 'api-key: <key>' or 'Authorization: Bearer <key>', or from a "
            "browser '?api-key=<key>' or the subprotocol 'openai-insecure-api-key.<key>' "
            "next to 'realtime'")


@serve.deployment(name="Ingress")
@serve.ingress(app)
class IngressDeployment:
    def __init__(self, options: dict[str, Any], asr: DeploymentHandle, llm: DeploymentHandle,
                 tts: DeploymentHandle) -> None:
        from voxserve.models.silero_vad import SileroVad

        route_to_serve_log()
        self._options = VoxServeOptions.model_validate(options)
        self._handles = {"asr": asr, "llm": llm, "tts": tts}
        self._pipeline = ServePipeline(asr, llm, tts)
        self._vad_factory = SileroVad.shared()
        self._eot_model = None
        if self._options.vad.end_of_turn_model:
            from voxserve.models.smart_turn import SmartTurn
            self._eot_model = SmartTurn()
        self._model_names = {"asr": self._options.asr.model, "llm": self._options.llm.model,
                             "tts": self._options.tts.engine}
        self._observer = RayMetricsObserver()
        self._sessions: dict[str, RealtimeSession] = {}
        self._admission = Admission(self._options.limits)
        # VoiceRAG's search_knowledge, when the options name documents (voxserve/knowledge)
        tool = knowledge_tool(self._options.knowledge, log.info)
        self._server_tools = (tool,) if tool is not None else ()

    def _admit(self, headers: Mapping[str, str], query: Mapping[str, str],
               subprotocols: Sequence[str], *, secrets_ok: bool = True) -> _Grant | _Refusal:
        """Who is asking, decided before any upgrade: Origin first (a refused page learns
        nothing about keys), then a client secret or a key. voxserve/auth.py has the forms."""
        server = self._options.server
        origin = headers.get("origin")
        if not origin_allowed(origin, server.allowed_origins, headers.get("host")):
            return _Refusal(403, f"origin {(origin or '')[:200]!r} is not allowed on this server "
                            "(server.allowed_origins)")
        credential = presented_credential(headers, query, subprotocols)
        if credential is not None and is_token(credential.value):
            if not secrets_ok:
                return _Refusal(403, "a client secret cannot mint client secrets: use an API key")
            try:
                return _Grant(None, verify_token(credential.value, self._signing_keys,
                                                 time.time()))
            except TokenError as exc:
                return _Refusal(401, str(exc))
        known = credential is not None and is_key(credential.value, server.api_keys)
        if server.auth_required() and credential is None:
            return _Refusal(401, _expected_credential())
        if server.auth_required() and not known:
            return _Refusal(401, "invalid API key")
        return _Grant(credential.value if credential is not None and known else None, None)

    @property
    def _signing_keys(self) -> list[str]:
        # With no keys (a loopback dev server) secrets are still minted, so a browser app built
        # on client_secrets runs unchanged; signed with the empty key, they guard nothing.
        return self._options.server.api_keys or [""]

    @app.post("/v1/realtime/client_secrets")
    async def _mint_ga(self, request: Request) -> Response:
        """A short-lived secret for a browser, minted with a real key (voxserve/client_secrets.py)."""
        return await self._mint(request)

    @app.post("/openai/v1/realtime/client_secrets")
    async def _mint_azure(self, request: Request) -> Response:
        return await self._mint(request)

    async def _mint(self, request: Request) -> Response:
        admission = self._admit(request.headers, request.query_params, (), secrets_ok=False)
        if isinstance(admission, _Refusal):
            log.warning("refused client_secrets request from %s: %s", request.client,
                        admission.reason[:80])
            return PlainTextResponse(admission.reason, status_code=admission.status)
        try:
            body = json.loads(await request.body() or b"{}")
        except (ValueError, UnicodeDecodeError):
            return PlainTextResponse("the request body must be JSON", status_code=400)
        key = admission.key if admission.key is not None else self._signing_keys[0]
        try:
            minted = client_secrets.create(body, key, self._options.session, time.time())
        except ValueError as exc:
            return PlainTextResponse(f"invalid client_secrets request: {exc}", status_code=400)
        return JSONResponse(minted)

    @app.get("/health")
    async def health(self) -> JSONResponse:
        """200 only when every deployment answers; 503 naming the ones that do not."""
        async def probe(name: str, handle: DeploymentHandle) -> tuple[str, bool]:
            try:
                return name, bool(await asyncio.wait_for(handle.ready.remote(), timeout=5.0))
            except Exception:
                return name, False
        results = dict(await asyncio.gather(*(probe(n, h) for n, h in self._handles.items())))
        ok = all(results.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "deployments": results,
                             "sessions": len(self._sessions)}, status_code=200 if ok else 503)

    async def _session_counts(self) -> dict[str, Any]:
        counts: dict[str, Any] = {"sessions": len(self._sessions)}
        if (total := await self._admission.server_sessions()) is not None:
            counts["server_sessions"] = total  # every ingress replica's (limits.max_sessions)
        return counts

    @app.get("/stats")
    async def stats(self) -> JSONResponse:
        """Per-stage counters (completed / cancelled work) from every model deployment, this
        replica's answers started at a pause by outcome (`speculations`, and the LLM seconds they
        took in `speculation_seconds`), and each
        process's memory, descriptors, threads and tasks (this replica's under `process`; with
        several replicas of a stage, the one the handle picked answers)."""
        infos = await asyncio.gather(*(h.info.remote() for h in self._handles.values()))
        return JSONResponse({**await self._session_counts(),
                             "deployments": dict(zip(self._handles, infos, strict=True)),
                             "recent_barge_ins": list(self._observer.recent_barge_ins),
                             "speculations": dict(self._observer.speculations),
                             "speculation_seconds": {k: round(v, 3) for k, v in
                                                     self._observer.speculation_seconds.items()},
                             "process": process_stats.read()})

    @app.get("/")
    async def root(self) -> Response:
        """The browser page (voxserve/page.py): a Voice Live client with a talking face."""
        return self._page_file("index.html")

    @app.get("/web/{name}")
    async def web(self, name: str) -> Response:
        return self._page_file(name)

    @staticmethod
    def _page_file(name: str) -> Response:
        found = page.read(name)
        if found is None:
            return PlainTextResponse("not found", status_code=404)
        body, kind = found
        return Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})

    @app.get("/voices")
    async def voices(self) -> JSONResponse:
        """The voice names a session may ask for (the page's picker) and the default."""
        opts = self._options.session
        return JSONResponse({"voices": sorted(opts.voices), "default": opts.default_voice})

    # One thin method per route (the path and headers pick the dialect). This module does not use
    # `from __future__ import annotations`: Serve's class-based view rebuilds these signatures,
    # and a string annotation "WebSocket" then reads as a required query parameter, which
    # FastAPI answers by refusing the socket (close 1008, HTTP 403).
    @app.websocket("/v1/realtime")
    async def _v1(self, ws: WebSocket) -> None:
        await self._serve_socket(ws)

    @app.websocket("/realtime")
    async def _bare(self, ws: WebSocket) -> None:
        await self._serve_socket(ws)

    @app.websocket("/openai/realtime")
    async def _azure_openai(self, ws: WebSocket) -> None:
        await self._serve_socket(ws)

    @app.websocket("/openai/v1/realtime")
    async def _azure_openai_v1(self, ws: WebSocket) -> None:
        await self._serve_socket(ws)

    @app.websocket("/voice-live/realtime")
    async def _voice_live(self, ws: WebSocket) -> None:
        await self._serve_socket(ws)

    @app.websocket("/voxserve/echo")
    async def _echo(self, ws: WebSocket) -> None:
        """Gateway benchmark: echoes each text frame, so a client measures what the WebSocket
        path through Serve costs without any model work (`voxserve bench --echo`)."""
        if (admitted := await self._admit_socket(ws)) is None:
            return
        await ws.accept(subprotocol=chosen_subprotocol(admitted[1]))
        try:
            while True:
                await ws.send_text(await ws.receive_text())
        except (WebSocketDisconnect, RuntimeError):
            pass

    @staticmethod
    async def _deny(ws: WebSocket, status: int, reason: str) -> None:
        """Refuse the upgrade with an HTTP status and a plain-text reason."""
        try:
            await ws.send_denial_response(PlainTextResponse(reason, status_code=status))
        except RuntimeError:  # server without the denial-response extension
            await ws.close(code=1008, reason=reason[:120])

    async def _admit_socket(self, ws: WebSocket) -> tuple[_Grant, list[str]] | None:
        """The grant and the offered subprotocols, or None once the upgrade was refused."""
        offered = parse_subprotocols(ws.headers.get("sec-websocket-protocol"))
        admission = self._admit(ws.headers, ws.query_params, offered)
        if isinstance(admission, _Refusal):
            log.warning("refused WebSocket from %s: %d %s", ws.client, admission.status,
                        admission.reason[:80])
            await self._deny(ws, admission.status, admission.reason)
            return None
        return admission, offered

    async def _serve_socket(self, ws: WebSocket) -> None:
        if (admitted := await self._admit_socket(ws)) is None:
            return
        admission, offered = admitted
        dialect = pick_dialect(ws.url.path, ws.headers, ws.query_params)
        if agent := next((k for k in _AGENT_PARAMS if k in ws.query_params), None):
            # Voice Live agent mode: a Foundry agent answers. Serving our own LLM instead would
            # answer without the agent's instructions and tools, so say no before the upgrade.
            await self._deny(ws, 400, f"agent mode ({agent}) is not available on this server: "
                             "connect without it and send instructions and tools")
            return
        model = ws.query_params.get("model") or ws.query_params.get("deployment")
        transcription_only = ws.query_params.get("intent") == "transcription"
        initial = None
        if (secret := admission.secret) is not None:
            pinned = client_secrets.scoped_model(secret.session)
            if pinned is not None and model is not None and model != pinned:
                await self._deny(ws, 403, f"this client secret is for model {pinned[:64]!r}, "
                                 f"not {model[:64]!r}")
                return
            try:
                initial = client_secrets.scoped_config(secret.session, self._options.session,
                                                       model, transcription_only)
            except ValueError as exc:  # valid when minted; the options changed since
                await self._deny(ws, 400, f"the client secret's session is refused: {exc}")
                return
        if (busy := await self._admission.enter()) is not None:
            log.warning("refused WebSocket from %s: 503 %s", ws.client, busy[:80])
            await self._deny(ws, 503, busy)
            return
        try:
            await self._run_session(ws, offered, dialect, model, transcription_only, initial)
        finally:
            await self._admission.leave()

    async def _run_session(self, ws: WebSocket, offered: list[str], dialect: Dialect,
                           model: str | None, transcription_only: bool,
                           initial: SessionConfig | None) -> None:
        await ws.accept(subprotocol=chosen_subprotocol(offered))
        session = RealtimeSession(dialect, self._pipeline, self._vad_factory,
                                  self._options.session, self._options.vad, model=model,
                                  observer=self._observer, eot_model=self._eot_model,
                                  model_names=self._model_names,
                                  transcription_models=self._options.asr.transcription_models,
                                  transcription_only=transcription_only,
                                  initial_config=initial, limits=self._options.limits,
                                  asr=self._options.asr, server_tools=self._server_tools)
        self._sessions[session.id] = session
        try:
            await session.serve(_WebSocketTransport(ws))
        except* (WebSocketDisconnect, ConnectionError):
            pass  # the client went away mid-send; the session's work is already cancelled
        finally:
            self._sessions.pop(session.id, None)
            if ws.client_state is WebSocketState.CONNECTED:
                try:
                    await ws.close()
                except RuntimeError:
                    pass

