"""The WebSocket ingress: routes, auth, dialect choice and one `RealtimeSession` per socket.

Each WebSocket is one long ASGI request, so a session stays on the replica that accepted it and
this replica owns the session's streaming state and its cancellation.
"""

import asyncio
import hmac
import logging
from typing import Any

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.websockets import WebSocketDisconnect, WebSocketState

from voxserve.config import VoxServeOptions
from voxserve.protocol.dialects import pick_dialect
from voxserve.session.session import RealtimeSession
from voxserve.deployments.logs import route_to_serve_log
from voxserve.deployments.metrics import RayMetricsObserver
from voxserve.deployments.serve_pipeline import ServePipeline

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


def _presented_key(ws: WebSocket) -> str | None:
    if key := ws.headers.get("api-key"):
        return key
    auth = ws.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


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

    def _authorized(self, ws: WebSocket) -> bool:
        server = self._options.server
        if not server.auth_required():
            return True
        key = _presented_key(ws)
        return key is not None and any(hmac.compare_digest(key, k) for k in server.api_keys)

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

    @app.get("/stats")
    async def stats(self) -> JSONResponse:
        """Per-stage counters (completed / cancelled work) from every model deployment."""
        infos = await asyncio.gather(*(h.info.remote() for h in self._handles.values()))
        return JSONResponse({"sessions": len(self._sessions),
                             "deployments": dict(zip(self._handles, infos, strict=True)),
                             "recent_barge_ins": list(self._observer.recent_barge_ins)})

    @app.get("/")
    async def root(self) -> PlainTextResponse:
        return PlainTextResponse("VoxServe: connect a Realtime client to ws://HOST:PORT/v1/realtime "
                                 "or a Voice Live client to /voice-live/realtime\n")

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
        if not self._authorized(ws):
            await ws.close(code=1008, reason="invalid or missing API key")
            return
        await ws.accept()
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

    async def _serve_socket(self, ws: WebSocket) -> None:
        if not self._authorized(ws):
            log.warning("rejected unauthenticated WebSocket from %s", ws.client)
            await self._deny(ws, 401, "invalid or missing API key")
            return
        dialect = pick_dialect(ws.url.path, ws.headers, ws.query_params)
        if agent := next((k for k in _AGENT_PARAMS if k in ws.query_params), None):
            # Voice Live agent mode: a Foundry agent answers. Serving our own LLM instead would
            # answer without the agent's instructions and tools, so say no before the upgrade.
            await self._deny(ws, 400, f"agent mode ({agent}) is not available on this server: "
                             "connect without it and send instructions and tools")
            return
        model = ws.query_params.get("model") or ws.query_params.get("deployment")
        await ws.accept()
        session = RealtimeSession(dialect, self._pipeline, self._vad_factory,
                                  self._options.session, self._options.vad, model=model,
                                  observer=self._observer, eot_model=self._eot_model,
                                  model_names=self._model_names,
                                  transcription_models=self._options.asr.transcription_models,
                                  transcription_only=ws.query_params.get("intent")
                                  == "transcription")
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

