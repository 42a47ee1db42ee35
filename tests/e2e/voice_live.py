"""A Voice Live session through the official `azure-ai-voicelive` client, for e2e tests: every
event it receives is checked against the SDK's models and kept, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.conformance import check_event
from tests.e2e.conftest import Server
from voxserve.protocol.dialects import Dialect

TIMEOUT_S = 240


@dataclass
class VoiceLive:
    conn: Any
    events: list[dict[str, Any]] = field(default_factory=list)

    async def until(self, kind: str) -> dict[str, Any]:
        """Events up to the next `kind` (returned), each checked and kept."""
        while True:
            event = dict((await asyncio.wait_for(self.conn.recv(), TIMEOUT_S)).as_dict())
            check_event(event, Dialect.VOICE_LIVE)
            self.events.append(event)
            if event["type"] == kind:
                return event


@asynccontextmanager
async def voice_live(server: Server, model: str = "gpt-4o") -> AsyncIterator[VoiceLive]:
    """A connected session whose `session.created` has arrived."""
    from azure.ai.voicelive.aio import connect
    from azure.core.credentials import AzureKeyCredential

    async with connect(endpoint=server.http, credential=AzureKeyCredential(server.api_key),
                       model=model) as conn:
        session = VoiceLive(conn)
        await session.until("session.created")
        yield session
