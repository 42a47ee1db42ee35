"""Tool-use benchmark: the labelled set of `bench/tool_cases.py` through a real server and the
official `openai` client, with `tool_choice: "auto"` and sampling on (the server's defaults).

    .venv/bin/python -m bench.tool_use --out bench-results/tool-use [--url ws://...] [--config f.yaml]

Without `--url` it starts `voxserve serve` on a free loopback port. Each case opens a session with
the eight tools, replays the case's earlier turns, then makes the request: typed (a user message
and `response.create`) and, for the cases marked spoken, also as speech synthesized by the
packaged TTS, committed by hand so the time runs from the end of the audio. When the answer is a
call to the right tool, the case's result goes back with another `response.create`, and the
answer to it is checked (spoken correctly, or a loop: the same call again).

`--decisions` measures the speak-or-call decision alone, in process on the LLM engine: P(call)
for every typed case, the threshold chosen on the even-numbered half of the set (the most right
decisions with false calls at most 5 %), and that threshold's decisions on the odd half.

Measured: correct calls (the right tool where one is needed), argument match, missed calls (a
spoken answer where a call was needed), false calls (a call where none was), loops, results
spoken correctly, and the time from the end of the request to `function_call_arguments.done` and
to the first audio of a spoken answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from voxserve.bench.report import environment, pct
from voxserve.bench.server import LocalServer
from voxserve.bench.tool_cases import CASES, TOOLS, Case, args_match, spoken_correctly
from voxserve.client import RATE, pcm16_frames

STEP_TIMEOUT_S = 120.0


@dataclass
class Step:
    """One response: what it did and when."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)
    said: str = ""
    status: str = ""
    arguments_done_s: float | None = None  # end of request -> first function_call_arguments.done
    first_audio_s: float | None = None  # end of request -> first output audio delta
    errors: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    case: str
    kind: str  # call | no_tool | multi_turn
    mode: str  # typed | spoken
    expected: str | None
    heard: str = ""  # what the server transcribed (spoken mode)
    first: Step = field(default_factory=Step)
    after_result: Step | None = None

    @property
    def called(self) -> str | None:
        return self.first.calls[0][0] if self.first.calls else None


async def _response(conn: Any, t0: float, outcome: Outcome | None = None) -> Step:
    """Read events up to `response.done`; times are from `t0` (the end of the request)."""
    step = Step()
    async with asyncio.timeout(STEP_TIMEOUT_S):
        async for ev in conn:
            now = time.monotonic() - t0
            if ev.type == "response.function_call_arguments.done" and step.arguments_done_s is None:
                step.arguments_done_s = now
            elif ev.type == "response.output_audio.delta" and step.first_audio_s is None:
                step.first_audio_s = now
            elif ev.type == "conversation.item.input_audio_transcription.completed" and outcome:
                outcome.heard = ev.transcript
            elif ev.type == "error":
                step.errors.append(f"{ev.error.code}: {ev.error.message}")
            elif ev.type == "response.done":
                step.status = ev.response.status or ""
                for out in ev.response.output or ():
                    if out.type == "function_call":
                        try:
                            args = json.loads(out.arguments or "{}")
                        except json.JSONDecodeError:
                            args = {"<invalid json>": out.arguments}
                        step.calls.append((out.name or "", args))
                        step.call_ids.append(out.call_id or "")
                    elif out.type == "message":
                        step.said += " ".join(c.transcript or c.text or "" for c in out.content or ())
                return step
    raise TimeoutError("no response.done")


async def run_case(client: Any, case: Case, speech: np.ndarray | None,
                   tool_choice: Any = None) -> Outcome:
    """One case in a session of its own; `tool_choice` overrides the session's "auto" for the
    request's response."""
    mode = "typed" if speech is None else "spoken"
    outcome = Outcome(case.id, case.kind, mode, case.tool)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={
            "type": "realtime", "output_modalities": ["audio"],
            "audio": {"input": {"turn_detection": None,
                                "transcription": {"model": "whisper-1", "language": "en"}}},
            "tools": TOOLS, "tool_choice": "auto"})
        async for ev in conn:
            if ev.type == "session.updated":
                break
        for item in case.history:
            await conn.conversation.item.create(item=item)
        if speech is None:
            await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": case.request}]})
        else:
            for frame in pcm16_frames(speech, tail_silence_s=0.3):
                await conn.input_audio_buffer.append(audio=frame)
            await conn.input_audio_buffer.commit()
        t0 = time.monotonic()
        await conn.response.create(**({"response": {"tool_choice": tool_choice}} if tool_choice else {}))
        outcome.first = await _response(conn, t0, outcome)
        if case.result is not None and outcome.called == case.tool:
            await conn.conversation.item.create(item={
                "type": "function_call_output", "call_id": outcome.first.call_ids[0],
                "output": json.dumps(case.result)})
            t1 = time.monotonic()
            await conn.response.create()
            outcome.after_result = await _response(conn, t1)
    return outcome


def synthesize(cases: list[Case]) -> dict[str, np.ndarray]:
    """Each spoken case's request as speech from the packaged TTS, at the client's rate."""
    return speech({case.id: case.request for case in cases})


def speech(texts: dict[str, str]) -> dict[str, np.ndarray]:
    """Each text (by key) as speech from the packaged TTS, at the client's rate."""
    from voxserve.audio.resample import resample
    from voxserve.models.hibari_tts import HibariTtsEngine

    tts = HibariTtsEngine(threads=1)
    out = {}
    for key, text in texts.items():
        chunk = tts.synthesize(text)
        out[key] = resample(chunk.audio, chunk.sample_rate, RATE).astype(np.float32)
    return out


def grade(o: Outcome, case: Case) -> dict[str, Any]:
    first_args = o.first.calls[0][1] if o.first.calls else {}
    after = o.after_result
    return {
        "right_tool": case.tool is not None and o.called == case.tool,
        "args_match": case.tool is not None and o.called == case.tool and args_match(case.args, first_args),
        "missed_call": case.tool is not None and o.called is None,
        "false_call": case.tool is None and o.called is not None,
        "several_calls": len(o.first.calls) > 1,
        "loop": bool(after and any(c == o.first.calls[0] for c in after.calls)),
        "called_after_result": bool(after and after.calls),
        "spoken_correctly": bool(after and not after.calls and spoken_correctly(case, after.said)),
    }


def _share(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    hits = sum(1 for r in rows if r[key])
    return {"n": len(rows), "hits": hits, "pct": round(100 * hits / len(rows), 1) if rows else None}


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    by_id = {c.id: c for c in CASES}
    summary: dict[str, Any] = {}
    for mode in ("typed", "spoken"):
        rows = [{**grade(o, by_id[o.case]), "o": o} for o in outcomes if o.mode == mode]
        if not rows:
            continue
        need = [r for r in rows if by_id[r["o"].case].tool]
        none = [r for r in rows if not by_id[r["o"].case].tool]
        fed = [r for r in rows if r["o"].after_result is not None]
        summary[mode] = {
            "cases": len(rows),
            "correct_calls": _share(need, "right_tool"),
            "args_match": _share(need, "args_match"),
            "missed_calls": _share(need, "missed_call"),
            "false_calls": _share(none, "false_call"),
            "loops": _share(fed, "loop"),
            "called_again_after_result": _share(fed, "called_after_result"),
            "results_spoken_correctly": _share(fed, "spoken_correctly"),
            "arguments_done_ms": pct([1000 * r["o"].first.arguments_done_s for r in need
                                      if r["o"].first.arguments_done_s is not None]),
            "spoken_answer_first_audio_ms": pct([1000 * r["o"].first.first_audio_s for r in none
                                                 if r["o"].first.first_audio_s is not None]),
            "result_answer_first_audio_ms": pct([1000 * r["o"].after_result.first_audio_s for r in fed
                                                 if r["o"].after_result.first_audio_s is not None]),
            "errors": sum(len(r["o"].first.errors) for r in rows),
        }
    return summary


def markdown(s: dict[str, Any]) -> str:
    lines = ["| measure | typed | spoken |", "|---|---|---|"]

    def share(mode: str, key: str) -> str:
        v = s.get(mode, {}).get(key)
        return f"{v['hits']}/{v['n']} ({v['pct']} %)" if v and v["n"] else "-"

    def ms(mode: str, key: str) -> str:
        v = s.get(mode, {}).get(key)
        return f"{v['p50']:.0f} / {v['p95']:.0f} (n={v['n']})" if v and v.get("n") else "-"

    for key in ("correct_calls", "args_match", "missed_calls", "false_calls", "loops",
                "called_again_after_result", "results_spoken_correctly"):
        lines.append(f"| {key.replace('_', ' ')} | {share('typed', key)} | {share('spoken', key)} |")
    for key in ("arguments_done_ms", "spoken_answer_first_audio_ms", "result_answer_first_audio_ms"):
        lines.append(f"| {key.replace('_', ' ')} p50 / p95 | {ms('typed', key)} | {ms('spoken', key)} |")
    return "\n".join(lines) + "\n"


async def run(url: str, api_key: str | None, cases: list[Case], spoken: bool) -> list[Outcome]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key=api_key or "none", websocket_base_url=url.removesuffix("/realtime"))
    speech = synthesize([c for c in cases if c.spoken]) if spoken else {}
    jobs = [(c, None) for c in cases] + [(c, speech[c.id]) for c in cases if c.id in speech]
    outcomes = []
    for case, audio in tqdm(jobs, desc="tool-use cases", unit="case"):
        try:
            outcomes.append(await run_case(client, case, audio))
        except (TimeoutError, OSError) as exc:
            failed = Outcome(case.id, case.kind, "typed" if audio is None else "spoken", case.tool)
            failed.first.errors.append(f"client: {exc!r}")
            outcomes.append(failed)
    return outcomes


@dataclass
class Decision:
    """What the engine's decision step sees for one typed case: P(call), and the call it makes
    when it calls (the say-or-call schema restricted to the tools), checked for grounding."""

    p_call: float
    call: str | None  # the tool the call step picks
    grounded: bool

    def calls(self, threshold: float) -> str | None:
        return self.call if self.p_call >= threshold and self.grounded else None


async def engine_decisions(cases: list[Case], threads: int) -> dict[str, Decision]:
    from voxserve.config import DEFAULT_SYSTEM_PROMPT
    from voxserve.models.base import ChatRequest, ToolSpec
    from voxserve.models.llamacpp_llm import LlamaCppEngine
    from voxserve.models.tool_decision import grounded
    from voxserve.protocol.items import parse_client_item
    from voxserve.session.conversation import Conversation

    engine = LlamaCppEngine(n_threads=threads, verbosity=0)
    tools = tuple(ToolSpec(t["name"], t["description"], t["parameters"]) for t in TOOLS)
    out = {}
    for case in tqdm(cases, desc="decisions", unit="case"):
        conversation = Conversation()
        for item in case.history:
            conversation.add(parse_client_item(item))
        messages = await conversation.chat_messages(DEFAULT_SYSTEM_PROMPT, case.request)
        p = await engine.call_probability(ChatRequest(messages=messages, tools=tools))
        forced = ChatRequest(messages=messages, tools=tools, tool_choice="required", temperature=0.0)
        name = arguments = ""
        async for delta in engine.stream(forced):
            if delta.kind == "tool_call":
                name, arguments = delta.name, delta.arguments
        out[case.id] = Decision(p, name or None, grounded(name, arguments, tools, messages))
    engine.close()
    return out


def decision_stats(cases: list[Case], d: dict[str, Decision], threshold: float) -> dict[str, Any]:
    made = {c.id: d[c.id].calls(threshold) for c in cases}
    need = [c for c in cases if c.tool]
    none = [c for c in cases if not c.tool]
    return {"threshold": threshold, "cases": len(cases),
            "right_decisions": sum(bool(made[c.id]) == bool(c.tool) for c in cases),
            "right_tool": sum(made[c.id] == c.tool for c in need), "need_call": len(need),
            "false_calls": sum(bool(made[c.id]) for c in none), "no_tool": len(none),
            "false_calls_without_grounding": sum(d[c.id].p_call >= threshold for c in none)}


def choose_threshold(cases: list[Case], d: dict[str, Decision], max_false: float = 0.05) -> float:
    """The threshold with the most right decisions on `cases` whose false-call share is at most
    `max_false` (ties: the lowest, which misses fewest calls); without one, the fewest false
    calls."""
    candidates = sorted({round(x.p_call, 3) for x in d.values()} | {0.5})
    stats = [decision_stats(cases, d, t) for t in candidates]
    allowed = [s for s in stats if s["false_calls"] <= max_false * s["no_tool"]]
    if allowed:
        return float(max(allowed, key=lambda s: (s["right_decisions"], -s["threshold"]))["threshold"])
    return float(min(stats, key=lambda s: (s["false_calls"], -s["right_decisions"]))["threshold"])


def decisions(out: Path, threads: int) -> int:
    d = asyncio.run(engine_decisions(CASES, threads))
    tune, held = CASES[0::2], CASES[1::2]
    threshold = choose_threshold(tune, d)
    report = {"env": environment(), "decisions": {k: asdict(v) for k, v in d.items()},
              "chosen_on_even_half": threshold,
              "even_half": decision_stats(tune, d, threshold),
              "odd_half": decision_stats(held, d, threshold),
              "odd_half_at_0.5": decision_stats(held, d, 0.5)}
    (out / "decisions.json").write_text(json.dumps(report, indent=1))
    for key in ("even_half", "odd_half", "odd_half_at_0.5"):
        print(key, report[key])
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="ws://host:port/v1/realtime of a running server")
    ap.add_argument("--api-key")
    ap.add_argument("--config", help="options file for the server this starts (without --url)")
    ap.add_argument("--cases", help="comma-separated case ids (default: all)")
    ap.add_argument("--no-spoken", action="store_true", help="typed requests only")
    ap.add_argument("--decisions", action="store_true",
                    help="the speak-or-call decision alone, in process (no server)")
    ap.add_argument("--threads", type=int, default=1, help="LLM threads for --decisions")
    ap.add_argument("--out", default="bench-results/tool-use")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.decisions:
        return decisions(out, args.threads)
    cases = CASES if not args.cases else [c for c in CASES if c.id in args.cases.split(",")]
    server = None
    url = args.url
    if url is None:
        print("[tool_use] starting voxserve serve", flush=True)
        server = LocalServer(out / "server.log", args.config)
        url = server.url
    try:
        outcomes = asyncio.run(run(url, args.api_key, cases, not args.no_spoken))
    finally:
        if server is not None:
            server.stop()
    summary = summarise(outcomes)
    by_id = {c.id: c for c in CASES}
    (out / "report.json").write_text(json.dumps(
        {"env": environment(), "config": args.config, "summary": summary,
         "outcomes": [{**asdict(o), **grade(o, by_id[o.case])} for o in outcomes]}, indent=1))
    (out / "report.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
