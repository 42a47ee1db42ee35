"""A long session against the real CPU LLM keeps inside its context, with no timing asserted.

The first 12 turns of the long-session benchmark's script (`bench.long_session`, typed turns, two
tool results in the history) against the packaged engine with a 1024-token context, so the fitting
(`models.context_window`) drops history within a few turns. What llama.cpp received is read off the
engine's server, not recomputed. Sized to run in a couple of minutes on a busy 2-core box.
"""

from __future__ import annotations

import asyncio

import pytest

from voxserve.bench.long_session import Request, build_engine, reused, run
from voxserve.models.context_window import prompt_budget

pytestmark = pytest.mark.models

N_CTX = 1024
ANSWER_TOKENS = 24
TURNS = 12


@pytest.fixture(scope="module")
def records() -> list[Request]:
    engine, recorder = build_engine(N_CTX)
    try:
        session = asyncio.run(run(engine, recorder, TURNS, ANSWER_TOKENS, progress=False))
    finally:
        engine.close()  # type: ignore[attr-defined]
    return session.records


def test_every_turn_is_answered_inside_the_context(records: list[Request]) -> None:
    assert len({r.turn for r in records}) == TURNS
    assert [r.error for r in records if r.error] == []
    for r in records:
        assert r.finish_reason in ("stop", "length") and r.completion_tokens > 0, r
        assert 0 < r.prompt_tokens <= prompt_budget(N_CTX, ANSWER_TOKENS), r


def test_history_is_dropped_but_the_system_prompt_and_the_latest_message_are_kept(
        records: list[Request]) -> None:
    assert any(r.dropped_messages > 0 for r in records), [r.prompt_tokens for r in records]
    for r in records:
        assert r.system_kept and r.latest_kept, r
    answering = [r for r in records if r.kind == "tool_result"]
    assert answering and all(r.tail_tool_result_kept for r in answering), answering


def test_the_cut_stays_put_so_the_cached_prefix_is_reused(records: list[Request]) -> None:
    first_cut = next(i for i, r in enumerate(records) if r.dropped_messages > 0)
    # after a cut, a request whose cut did not move extends the prompt before it
    same_cut = [(prev, r) for prev, r in zip(records[first_cut:], records[first_cut + 1:], strict=False)
                if r.dropped_messages == prev.dropped_messages]
    assert len(same_cut) >= 2, [r.dropped_messages for r in records]
    assert sum(reused(r, prev) for prev, r in same_cut) >= 0.75 * len(same_cut), \
        [(r.turn, r.prompt_tokens, r.cached_tokens) for _, r in same_cut]
    # and before any cut every request did
    assert all(reused(r, prev) for prev, r in zip([None, *records], records[:first_cut], strict=False))
