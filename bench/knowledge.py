"""VoiceRAG benchmark: the 44 questions of `bench/knowledge_cases.py` over `bench/knowledge_docs`.

    .venv/bin/python -m bench.knowledge --out bench-results/knowledge [--retrieval-only]

1. **Retrieval**, in process: the answering document's rank for each question with BM25 alone
   (`lexical`), embeddings alone (`semantic`) and the two fused (`hybrid`, the default): hit@1,
   hit@3 (the passages the model reads), mean reciprocal rank, and the time per search.
2. **Answers**, through a real server (started here with the documents configured, decoding
   greedy; no seed, which would turn the prompt cache off) and the official `openai`
   client, each question typed in a new session, three ways:
   `auto` (the model decides to search), `forced` (`tool_choice` names search_knowledge, so the
   answer's quality is measured apart from the decision) and `off`
   (`session.voxserve.knowledge: false`: what the model says without the documents, and the
   time to first audio of a turn with no retrieval). Counted: searches made, answers with every
   expected fact, citations (the answering document among the transcript's `sources`, and the
   share of cited documents that answer), and the time from `response.create` to the first audio
   (the preamble's, "Let me check.", when the answer searched) and to the answer's own audio.
3. **Spoken**, unless `--no-spoken`: every other English question as speech from the packaged
   TTS, streamed in real time with server VAD, `auto` and `off`: the same times from the end of
   the speech (the server's own TTFA from its `voxserve.response.timing` event is kept too), where
   the answer's prefill overlaps the user's speech as in a real call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from voxserve.bench.knowledge_cases import ABOUT, DOCS, QUESTIONS, Question
from voxserve.bench.report import environment, pct
from voxserve.bench.server import LocalServer
from voxserve.bench.tool_use import speech
from voxserve.client import RATE, pcm16_frames
from voxserve.knowledge.index import KnowledgeIndex, SearchMode

TOOL = "search_knowledge"
TIMEOUT_S = 180.0


def answered(q: Question, said: str) -> bool:
    """Every fact group of `q` appears in `said` (case-insensitive, as whole words)."""
    text = said.lower()
    return all(any(re.search(rf"(?<!\w){re.escape(alt.lower())}(?!\w)", text) for alt in group)
               for group in q.facts)


# ---- retrieval ------------------------------------------------------------------------------


def retrieval(index: KnowledgeIndex) -> dict[str, Any]:
    rows: dict[SearchMode, list[dict[str, Any]]] = {"lexical": [], "semantic": [], "hybrid": []}
    for q in QUESTIONS:
        for mode in rows:
            t0 = time.perf_counter()
            ranking = [pid for pid, _ in index.ranking(q.text, mode)]
            ms = (time.perf_counter() - t0) * 1000
            paths = index.paths(ranking)
            rank = next((i for i, p in enumerate(paths, 1) if p == q.doc), None)
            rows[mode].append({"id": q.id, "kind": q.kind, "rank": rank, "ms": ms})
    summary = {}
    for mode, rs in rows.items():
        def share(sel: list[dict[str, Any]], k: int) -> float:
            return round(100 * sum(1 for r in sel if r["rank"] and r["rank"] <= k) / len(sel), 1)
        summary[mode] = {
            "hit@1": share(rs, 1), "hit@3": share(rs, 3),
            "mrr": round(sum(1 / r["rank"] for r in rs if r["rank"]) / len(rs), 3),
            "by_kind_hit@3": {k: share([r for r in rs if r["kind"] == k], 3)
                              for k in ("exact", "paraphrase", "cross", "code")},
            "ms": pct([r["ms"] for r in rs]),
            "misses@3": [r["id"] for r in rs if not r["rank"] or r["rank"] > 3]}
    return {"summary": summary, "rows": rows}


# ---- answers through the server ------------------------------------------------------------


@dataclass
class Answer:
    id: str
    mode: str  # auto | forced | off, with "-spoken" for the spoken questions
    searched: list[str] = field(default_factory=list)  # the queries of its searches
    said: str = ""
    sources: list[str] = field(default_factory=list)
    first_audio_ms: float | None = None  # the first audio of the response (a preamble's)
    answer_audio_ms: float | None = None  # the first audio of the answer's own message
    ttfa_ms: float | None = None  # the server's (timing event); spoken: from the end of speech
    heard: str = ""  # spoken: the question as the server transcribed it
    status: str = ""
    errors: list[str] = field(default_factory=list)


async def _paced(conn: Any, audio: np.ndarray) -> None:
    """The question as a microphone sends it: 40 ms frames in real time, then silence."""
    t0 = time.monotonic()
    for i, frame in enumerate(pcm16_frames(audio, tail_silence_s=2.0, frame_ms=40)):
        await conn.input_audio_buffer.append(audio=frame)
        await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.04 - time.monotonic()))


async def ask(client: Any, q: Question, mode: str, audio: np.ndarray | None = None) -> Answer:
    """One question in a new session: typed (`response.create` by hand, timed from it), or
    spoken with server VAD (the answer starts by itself; the server times it from the end of
    the speech, which is what a caller waits through)."""
    out = Answer(q.id, mode + ("-spoken" if audio is not None else ""))
    spoken = audio is not None
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={
            "type": "realtime", "output_modalities": ["audio"],
            "audio": {"input": {"turn_detection": {"type": "server_vad"} if spoken else None,
                                "transcription": {"model": "whisper-1", "language": "en"}}},
            "voxserve": {"knowledge": mode != "off", "response_timing": True}})
        async for ev in conn:
            if ev.type == "session.updated":
                break
        t0 = time.monotonic()
        sender = None
        first_delta: dict[str, float] = {}  # item id -> its first audio, ms from t0
        if audio is not None:
            sender = asyncio.create_task(_paced(conn, audio))
            t0 += audio.size / RATE  # client times count from the end of the speech
        else:
            await conn.conversation.item.create(item={"type": "message", "role": "user",
                                                      "content": [{"type": "input_text",
                                                                   "text": q.text}]})
            t0 = time.monotonic()
            await conn.response.create(**({"response": {"tool_choice": {
                "type": "function", "name": TOOL}}} if mode == "forced" else {}))
        async with asyncio.timeout(TIMEOUT_S):
            async for ev in conn:
                if ev.type == "response.output_audio.delta":
                    first_delta.setdefault(ev.item_id, (time.monotonic() - t0) * 1000)
                    if out.first_audio_ms is None:
                        out.first_audio_ms = first_delta[ev.item_id]
                elif ev.type == "response.output_audio_transcript.done":  # the last: the answer
                    out.said = ev.transcript
                    out.sources = [s["path"] for s in (getattr(ev, "sources", None) or [])]
                    out.answer_audio_ms = first_delta.get(ev.item_id)
                elif ev.type == "conversation.item.input_audio_transcription.completed":
                    out.heard = ev.transcript
                elif ev.type == "error":
                    out.errors.append(f"{ev.error.code}: {ev.error.message}")
                elif ev.type == "response.done":
                    out.status = ev.response.status or ""
                    for item in ev.response.output or ():
                        if item.type == "function_call" and item.name == TOOL:
                            out.searched.append(json.loads(item.arguments or "{}").get("query", ""))
                elif ev.type == "voxserve.response.timing":  # after response.done
                    out.ttfa_ms = getattr(ev, "ttfa_ms", None)
                    break
        if sender is not None:
            sender.cancel()
    return out


def grade(a: Answer, q: Question) -> dict[str, Any]:
    return {"correct": answered(q, a.said), "cited_right": q.doc in a.sources,
            "cited": len(a.sources), "cited_wrong": sum(1 for s in a.sources if s != q.doc)}


def summarise(answers: list[Answer]) -> dict[str, Any]:
    by_id = {q.id: q for q in QUESTIONS}
    out: dict[str, Any] = {}
    for mode in ("auto", "forced", "off", "auto-spoken", "off-spoken"):
        rows = [(a, grade(a, by_id[a.id])) for a in answers if a.mode == mode]
        if not rows:
            continue
        n = len(rows)
        cited = sum(g["cited"] for _, g in rows)
        out[mode] = {
            "n": n,
            "searched": sum(1 for a, _ in rows if a.searched),
            "correct": sum(1 for _, g in rows if g["correct"]),
            "correct_when_searched": sum(1 for a, g in rows if g["correct"] and a.searched),
            "cited_right": sum(1 for _, g in rows if g["cited_right"]),
            "citation_precision": round(100 * (cited - sum(g["cited_wrong"] for _, g in rows))
                                        / cited, 1) if cited else None,
            "failed": sum(1 for a, _ in rows if a.status != "completed" or a.errors),
            "first_audio_ms": pct([a.first_audio_ms for a, _ in rows if a.first_audio_ms]),
            "first_audio_ms_searched": pct([a.first_audio_ms for a, _ in rows
                                            if a.first_audio_ms and a.searched]),
            "answer_audio_ms": pct([a.answer_audio_ms for a, _ in rows if a.answer_audio_ms]),
            "server_ttfa_ms": pct([a.ttfa_ms for a, _ in rows if a.ttfa_ms]),
            "server_ttfa_ms_searched": pct([a.ttfa_ms for a, _ in rows
                                            if a.ttfa_ms and a.searched]),
        }
    return out


SPOKEN_MODES = ("auto", "off")


def spoken_questions(questions: list[Question]) -> list[Question]:
    """Every other English question (the packaged TTS speaks English only)."""
    return [q for q in questions if q.language == "en"][::2]


async def answers(url: str, modes: list[str], questions: list[Question],
                  spoken: bool) -> list[Answer]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="none", websocket_base_url=url.removesuffix("/realtime"))
    out = []
    jobs: list[tuple[Question, str, np.ndarray | None]] = [
        (q, m, None) for m in modes for q in questions]
    if spoken:
        said = spoken_questions(questions)
        audio = speech({q.id: q.text for q in said})
        jobs += [(q, m, audio[q.id]) for m in SPOKEN_MODES for q in said]
    for q, mode, clip in tqdm(jobs, desc="questions", unit="q"):
        try:
            out.append(await ask(client, q, mode, clip))
        except (TimeoutError, OSError) as exc:
            failed = Answer(q.id, mode + ("-spoken" if clip is not None else ""))
            failed.errors.append(f"client: {exc!r}")
            out.append(failed)
    return out


def markdown(ret: dict[str, Any], ans: dict[str, Any] | None) -> str:
    lines = ["| retrieval | hit@1 | hit@3 | MRR | exact@3 | paraphrase@3 | cross-language@3 | "
             "code@3 | ms p50 |", "|---|---|---|---|---|---|---|---|---|"]
    for mode, s in ret.items():
        k = s["by_kind_hit@3"]
        lines.append(f"| {mode} | {s['hit@1']} % | {s['hit@3']} % | {s['mrr']} | {k['exact']} % | "
                     f"{k['paraphrase']} % | {k['cross']} % | {k['code']} % | {s['ms'].get('p50')} |")
    if ans:
        lines += ["", "| answers | n | searched | correct | cited the right document | "
                  "citation precision | first audio p50 / p90 ms | answer's audio p50 / p90 ms |",
                  "|---|---|---|---|---|---|---|---|"]
        for mode, s in ans.items():
            fa, aa = s["first_audio_ms"], s["answer_audio_ms"]
            lines.append(f"| {mode} | {s['n']} | {s['searched']} | {s['correct']} | "
                         f"{s['cited_right']} | {s['citation_precision']} % | "
                         f"{fa.get('p50')} / {fa.get('p90')} | {aa.get('p50')} / {aa.get('p90')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench-results/knowledge")
    ap.add_argument("--retrieval-only", action="store_true", help="no server, no answers")
    ap.add_argument("--modes", default="auto,forced,off")
    ap.add_argument("--questions", help="comma-separated question ids (default: all)")
    ap.add_argument("--no-spoken", action="store_true",
                    help="typed questions only (default: also every other English one spoken)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from voxserve.models.e5_embedder import E5Embedder

    with tempfile.TemporaryDirectory() as tmp:
        index = KnowledgeIndex(Path(tmp) / "index.sqlite", E5Embedder())
        stats = index.update(DOCS)
        print(f"[knowledge] {stats.documents} documents, {stats.passages} passages "
              f"({stats.seconds:.1f} s)", flush=True)
        ret = retrieval(index)
        index.close()
    ans_rows: list[Answer] = []
    ans = None
    if not args.retrieval_only:
        config = out / "options.yaml"
        # Greedy, without a seed: a seed turns llama.cpp's prompt cache off (LlmOptions.seed),
        # which would add a full prefill to every step and misstate the time to first audio.
        config.write_text("llm:\n  temperature: 0.0\n"
                          f"knowledge:\n  documents: {DOCS}\n  about: \"{ABOUT}\"\n"
                          f"  index: {out / 'index.sqlite'}\n")
        print("[knowledge] starting voxserve serve", flush=True)
        server = LocalServer(out / "server.log", str(config))
        try:
            wanted = args.questions.split(",") if args.questions else None
            ans_rows = asyncio.run(answers(server.url, args.modes.split(","),
                                           [q for q in QUESTIONS if not wanted or q.id in wanted],
                                           not args.no_spoken))
        finally:
            server.stop()
        ans = summarise(ans_rows)
    by_id = {q.id: q for q in QUESTIONS}
    (out / "report.json").write_text(json.dumps({
        "env": environment(), "retrieval": ret, "answers": ans,
        "rows": [{**asdict(a), **grade(a, by_id[a.id])} for a in ans_rows]}, indent=1))
    report = markdown(ret["summary"], ans)
    (out / "report.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
