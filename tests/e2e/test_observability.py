"""One trace per turn across every deployment, the metrics endpoint, and the timing event.

Driven by the official `openai` client: two spoken turns, then a barge-in on a long answer.
The server exports its spans to an in-process OTLP receiver (see conftest).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from typing import Any

import pytest

from tests import long_answer
from tests.e2e.conftest import Server
from tests.e2e.test_spoken_turn import TURN_TIMEOUT_S, _paced, _pcm_frames
from tests.speech import clip
from voxserve.client import read_wav, speech_end_s

pytestmark = pytest.mark.e2e


def _ttfa_count(server: Server) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=30) as r:
        body = r.read().decode()
    return sum(float(m.group(1)) for m in
               re.finditer(r"^ray_voxserve_ttfa_ms_count\{[^}]*\} ([0-9.e+]+)$", body, re.M))


async def _settled_count(server: Server, quiet_s: float = 12.0, timeout_s: float = 120) -> float:
    """The TTFA count once it has stopped changing for `quiet_s` (longer than Ray's export
    interval), so turns of earlier tests still in the export pipeline are not miscounted."""
    deadline = time.monotonic() + timeout_s
    value = _ttfa_count(server)
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet_s)
        again = _ttfa_count(server)
        if again == value:
            return value
        value = again
    return value


async def _wait_metric(server: Server, expected: float, timeout_s: float = 90) -> float:
    """Ray exports metrics every few seconds: wait until the count reaches `expected`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = _ttfa_count(server)
        if value >= expected or time.monotonic() > deadline:
            return value
        await asyncio.sleep(1.0)


async def test_one_trace_per_turn_across_deployments_metrics_and_timing(server: Server) -> None:
    from openai import AsyncOpenAI

    ttfa_before = await _settled_count(server)
    client = AsyncOpenAI(api_key=server.api_key, websocket_base_url=f"{server.ws}/v1")
    events: list[dict[str, Any]] = []
    client_ttfa: dict[str, float] = {}  # response id -> ms, end of speech -> first audio delta

    async with client.realtime.connect(model="gpt-realtime") as conn:
        async def recv() -> dict[str, Any]:
            ev = json.loads(await asyncio.wait_for(conn.recv_bytes(), TURN_TIMEOUT_S))
            ev["_at"] = time.monotonic()
            events.append(ev)
            return ev  # type: ignore[no-any-return]

        async def until(kind: str) -> dict[str, Any]:
            while (ev := await recv())["type"] != kind:
                pass
            return ev

        await until("session.created")
        await conn.session.update(session={
            "type": "realtime", "voxserve": {"response_timing": True},
            "audio": {"input": {"transcription": {"model": "whisper-1"},
                                "turn_detection": {"type": "server_vad"}}}})
        await until("session.updated")

        # A long answer (a count to forty, tests/long_answer.py), interrupted by speech. It comes
        # first, so that its conversation is exactly the one whose greedy answer was checked.
        for item in long_answer.conversation_items():
            await conn.conversation.item.create(item=item)
        await conn.response.create(response={"instructions": long_answer.INSTRUCTIONS})
        counting = (await until("response.output_audio.delta"))["response_id"]
        sender = asyncio.create_task(_paced(
            _pcm_frames(read_wav(clip("0880")[0]), tail_silence_s=1.0),
            lambda f: conn.input_audio_buffer.append(audio=f)))
        cancelled = await until("response.done")
        assert cancelled["response"]["id"] == counting and \
            cancelled["response"]["status"] == "cancelled", \
            f"the count was not cut by the speech: {long_answer.said(cancelled['response'])!r}"
        await until("voxserve.response.timing")
        interrupting = await until("response.done")
        await until("voxserve.response.timing")
        await sender

        for stem in ("0880", "0930"):  # two spoken turns
            audio = read_wav(clip(stem)[0])
            t0 = time.monotonic()
            sender = asyncio.create_task(_paced(
                _pcm_frames(audio), lambda f: conn.input_audio_buffer.append(audio=f)))
            speech_end = t0 + speech_end_s(audio)
            first = await until("response.output_audio.delta")
            client_ttfa[first["response_id"]] = (first["_at"] - speech_end) * 1000
            await until("voxserve.response.timing")
            await sender

    timings = {e["response_id"]: e for e in events if e["type"] == "voxserve.response.timing"}
    responses = [e["response"]["id"] for e in events if e["type"] == "response.done"]
    assert len(responses) == 4 and set(responses) == set(timings)
    assert interrupting["response"]["status"] == "completed"

    # --- traces: wait until every turn's root span arrived --------------------------------
    deadline = time.monotonic() + 60
    while True:
        spans = server.traces.snapshot()
        roots = {s["attributes"].get("voxserve.response_id"): s for s in spans
                 if s["name"] == "voxserve.turn"}
        sessions = [s for s in spans if s["name"] == "voxserve.session"]
        linked = {link for r in responses if r in roots for link in roots[r]["links"]}
        # this session's span is exported when the socket closes, possibly after the turns
        if (all(r in roots for r in responses) and linked <= {s["span_id"] for s in sessions}
                or time.monotonic() > deadline):
            break
        await asyncio.sleep(0.5)
    missing = [r for r in responses if r not in roots]
    assert not missing, f"no turn span for {missing}"

    trace_ids = [roots[r]["trace_id"] for r in responses]
    assert len(set(trace_ids)) == 4, "each turn must be its own trace"
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        by_trace.setdefault(s["trace_id"], []).append(s)
    session_span_ids = {s["span_id"] for s in sessions}

    for rid in responses:
        root = roots[rid]
        trace = by_trace[root["trace_id"]]
        ids = {s["span_id"]: s for s in trace}
        assert root["parent_span_id"] is None
        assert set(root["links"]) & session_span_ids, "turn must link to its session span"
        for s in trace:  # correctly parented: every span's parent is in the same trace
            if s is not root:
                assert s["parent_span_id"] in ids, f"{s['name']} ({s['service']}) has a foreign parent"
        names = {(s["service"], s["name"]) for s in trace}
        for needed in [("voxserve-ingress", "voxserve.response"), ("voxserve-llm", "llm.generate"),
                       ("voxserve-tts", "tts.synthesize")]:
            assert needed in names, f"{needed} missing from the trace of {rid}: {sorted(names)}"

        def ancestors(span: dict[str, Any], ids: dict[str, Any] = ids) -> list[str]:
            chain = []
            while span["parent_span_id"] in ids:
                span = ids[span["parent_span_id"]]
                chain.append(span["name"])
            return chain
        # the answer's LLM call: the response's own, or the one started at the pause that the
        # response adopted (session/speculation.py); either way inside the turn's trace
        def answers(span: dict[str, Any], ids: dict[str, Any] = ids) -> bool:
            while span["parent_span_id"] in ids:
                span = ids[span["parent_span_id"]]
                if span["name"] == "voxserve.response":
                    return True
                if span["name"] == "voxserve.speculation":
                    return span["attributes"].get("voxserve.speculation.outcome") == "adopted"
            return False
        llms = [s for s in trace if s["name"] == "llm.generate"]
        assert all(ancestors(s)[-1] == "voxserve.turn" for s in llms)
        assert any(answers(s) for s in llms), [ancestors(s) for s in llms]
        # the server's TTFA is the same number in the span, the event and (for spoken turns)
        # close to what the client saw
        assert root["attributes"]["voxserve.ttfa_ms"] == timings[rid]["ttfa_ms"]

    for rid in responses[-2:]:  # the spoken turns also went through the ASR replica
        names = {(s["service"], s["name"]) for s in by_trace[roots[rid]["trace_id"]]}
        assert ("voxserve-asr", "asr.transcribe") in names
        server_ttfa = timings[rid]["ttfa_ms"]
        # The client counts from when the last speech frame was due, the server from when it
        # arrived; on a saturated 2-core box the client's real-time sender lags its schedule
        # (measured: 162 ms at a 10 s TTFA), so the agreement allowed grows with the wait.
        tolerance = 150 + 0.03 * client_ttfa[rid]
        assert abs(server_ttfa - client_ttfa[rid]) < tolerance, (server_ttfa, client_ttfa[rid])

    cancelled_trace = by_trace[roots[counting]["trace_id"]]
    assert roots[counting]["attributes"]["voxserve.cancelled"] is True
    assert roots[counting]["attributes"]["voxserve.cancel_reason"] == "turn_detected"
    llm = next(s for s in cancelled_trace if s["name"] == "llm.generate")
    assert llm["attributes"].get("voxserve.cancelled") is True, "the LLM replica did not see the cancel"

    # --- metrics: the TTFA histogram counted exactly these four turns ---------------------
    await _wait_metric(server, ttfa_before + 4)
    ttfa_after = await _settled_count(server)  # nothing beyond these four may appear
    assert ttfa_after - ttfa_before == 4, (ttfa_before, ttfa_after)

