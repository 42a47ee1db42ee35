"""The openai SDK's Azure client on Azure's dated route, on the real stack.

`AsyncAzureOpenAI` opens `/openai/realtime?api-version=...&deployment=...`, with
`OpenAI-Beta: realtime=v1` from `.beta.realtime.connect` and without it from `.realtime.connect`.
Azure answers both in the preview (beta) protocol, so a beta-shaped session (`input_audio_format:
pcm16`) must be accepted either way and the spoken turn must come back in beta names.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_spoken_turn import _assert_spoken_turn, _pcm_frames, _speak_and_collect
from tests.speech import clip
from voxserve.client import read_wav
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.e2e

AZURE_API_VERSION = "2025-04-01-preview"


@pytest.mark.parametrize("resource", ["beta", "ga"],
                         ids=["beta-connect-with-header", "ga-connect-without-header"])
async def test_azure_openai_sdk_beta_session_and_spoken_turn(server: Server, whisper: Any,
                                                             resource: str) -> None:
    from openai import AsyncAzureOpenAI

    wav, reference = clip("0880")
    frames = _pcm_frames(read_wav(wav))
    # The Azure client always makes the endpoint wss://; websocket_base_url is how it reaches a
    # plain ws:// server. Path and query are still the SDK's own: /openai/realtime?api-version=...
    client = AsyncAzureOpenAI(api_key=server.api_key, azure_endpoint=server.http,
                              websocket_base_url=f"{server.ws}/openai",
                              api_version=AZURE_API_VERSION)
    connect = client.beta.realtime.connect if resource == "beta" else client.realtime.connect
    events: list[dict[str, Any]] = []
    async with connect(model="gpt-4o-realtime-preview") as conn:
        async def recv() -> dict[str, Any]:
            return json.loads(await conn.recv_bytes())  # type: ignore[no-any-return]

        first = await asyncio.wait_for(recv(), 60)
        assert first["type"] == "session.created", first
        assert "input_audio_format" in first["session"], f"not a beta session: {first}"
        events.append(first)
        # the same beta-shaped dict through either resource (the GA one's types do not check it)
        await conn.session.update(session={
            "modalities": ["text", "audio"], "input_audio_format": "pcm16",
            "output_audio_format": "pcm16", "voice": "alloy",
            "input_audio_transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}})
        await _speak_and_collect(recv, lambda f: conn.input_audio_buffer.append(audio=f),
                                 frames, events)
    updated = next(e for e in events if e["type"] == "session.updated")
    assert updated["session"]["input_audio_format"] == "pcm16", updated
    _assert_spoken_turn(events, Dialect.BETA, reference, whisper)
