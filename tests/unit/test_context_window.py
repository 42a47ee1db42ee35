"""Fitting a conversation into the context window: what is kept, what goes, and that the cut
point stays put while a conversation grows (so the KV cache of its prefix is reused)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from voxserve.models.context_window import (
    MESSAGE_OVERHEAD, ByteTokenizer, Truncation, fit_messages, needs_fitting, prompt_budget,
)

pytestmark = pytest.mark.unit


class WordTokenizer:
    """One token per whitespace-separated word; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self._vocab: dict[str, int] = {}
        self._words: list[str] = []

    def encode(self, text: str) -> list[int]:
        self.calls += 1
        ids = []
        for word in text.split():
            if word not in self._vocab:
                self._vocab[word] = len(self._words)
                self._words.append(word)
            ids.append(self._vocab[word])
        return ids

    def decode(self, tokens: Sequence[int]) -> str:
        return " ".join(self._words[t] for t in tokens)


def _words(n: int, tag: str) -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def _tokens(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"].split()) + MESSAGE_OVERHEAD for m in messages)


def _conversation(turns: int, words: int = 60) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": "You are a helpful voice assistant."}]
    for i in range(turns):
        msgs.append({"role": "user", "content": _words(words, f"q{i}w")})
        msgs.append({"role": "assistant", "content": _words(words, f"a{i}w")})
    return msgs


def test_a_short_conversation_is_sent_as_is_without_tokenizing() -> None:
    tok = WordTokenizer()
    msgs = _conversation(2, words=5) + [{"role": "user", "content": "And now?"}]
    assert not needs_fitting(msgs, n_ctx=4096, max_tokens=512)
    fitted = fit_messages(msgs, tok, n_ctx=4096, max_tokens=512)
    assert fitted.messages == msgs and not fitted.changed and tok.calls == 0


def test_a_long_conversation_keeps_the_system_prompt_the_latest_message_and_recent_history() -> None:
    msgs = _conversation(40) + [{"role": "user", "content": "What did I say first?"}]
    fitted = fit_messages(msgs, WordTokenizer(), n_ctx=1024, max_tokens=128)
    kept = fitted.messages
    assert kept[0] == msgs[0] and kept[-1] == msgs[-1]
    assert _tokens(kept) <= prompt_budget(1024, 128)
    # what stays is the most recent history, whole messages, starting with a user turn
    assert kept[1:-1] == msgs[len(msgs) - len(kept) + 1:-1] and kept[1]["role"] == "user"
    assert fitted.dropped_messages == len(msgs) - len(kept) > 0
    assert "oldest messages" in fitted.describe()
    # a quarter context at most is lost to the rounding of the cut
    assert _tokens(kept) > prompt_budget(1024, 128) - 1024 // 4 - 2 * (60 + MESSAGE_OVERHEAD)


def test_the_cut_moves_once_per_step_not_on_every_turn() -> None:
    firsts = []
    for turns in range(20, 60):  # each turn adds 2 * (20 + 8) tokens; a step is 1024 // 4
        msgs = _conversation(turns, words=20) + [{"role": "user", "content": "Next?"}]
        firsts.append(fit_messages(msgs, WordTokenizer(), n_ctx=1024, max_tokens=128).messages[1])
    moves = sum(a != b for a, b in zip(firsts, firsts[1:], strict=False))
    grown = 39 * 2 * (20 + MESSAGE_OVERHEAD)
    # dropping message by message would move the cut (and lose the cached prefix) on every turn
    assert 0 < moves <= grown // (1024 // 4) + 1, moves


def test_an_oversized_system_prompt_and_latest_message_are_cut_not_refused() -> None:
    system = {"role": "system", "content": _words(3000, "s")}
    latest = {"role": "user", "content": _words(3000, "u")}
    msgs = [system, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            latest]
    fitted = fit_messages(msgs, WordTokenizer(), n_ctx=1024, max_tokens=64)
    kept = fitted.messages
    assert [m["role"] for m in kept] == ["system", "user"]
    assert kept[0]["content"].startswith("s0 s1 ")  # the system prompt keeps its beginning
    assert kept[1]["content"].endswith(" u2998 u2999")  # what was said last keeps its end
    assert _tokens(kept) <= prompt_budget(1024, 64)
    assert len(kept[0]["content"].split()) <= 1024 // 2
    assert fitted.system_cut_tokens > 0 and fitted.latest_cut_tokens > 0


def test_the_answer_room_is_capped_so_a_huge_max_tokens_keeps_the_conversation() -> None:
    assert prompt_budget(4096, 100_000) == 4096 - 1024 - 16
    msgs = _conversation(3, words=100) + [{"role": "user", "content": "More?"}]
    fitted = fit_messages(msgs, WordTokenizer(), n_ctx=4096, max_tokens=100_000)
    assert fitted.messages == msgs


def test_the_byte_fallback_fits_by_an_upper_bound() -> None:
    msgs = _conversation(40) + [{"role": "user", "content": "Gr\u00fc\u00dfe, what now?"}]
    kept = fit_messages(msgs, ByteTokenizer(), n_ctx=1024, max_tokens=128).messages
    assert kept[0] == msgs[0] and kept[-1] == msgs[-1]
    assert sum(len(m["content"].encode()) + MESSAGE_OVERHEAD for m in kept) <= prompt_budget(1024, 128)
    assert ByteTokenizer().decode(ByteTokenizer().encode("caf\u00e9")[:4]) == "caf"  # split character dropped


# --- the client's truncation setting (GA `truncation`) ----------------------------------------


def test_truncation_disabled_sends_everything() -> None:
    msgs = _conversation(40) + [{"role": "user", "content": "last"}]
    policy = Truncation(mode="disabled")
    assert needs_fitting(msgs, n_ctx=1024, max_tokens=64)
    assert not needs_fitting(msgs, n_ctx=1024, max_tokens=64, policy=policy)
    fitted = fit_messages(msgs, WordTokenizer(), n_ctx=1024, max_tokens=64, policy=policy)
    assert fitted.messages == msgs and not fitted.changed


def _grow(policy: Truncation, turns: int, n_ctx: int = 2048, answer: int = 64
          ) -> list[tuple[str, int]]:
    """A conversation sent whole every turn, as the session sends it: per turn, the first
    history message kept and the history's tokens."""
    msgs = [{"role": "system", "content": "You are a helpful voice assistant."}]
    out = []
    for i in range(turns):
        msgs.append({"role": "user", "content": _words(60, f"q{i}w")})
        fitted = fit_messages(msgs, WordTokenizer(), n_ctx=n_ctx, max_tokens=answer,
                              policy=policy)
        history = fitted.messages[1:-1]
        out.append((history[0]["content"] if history else "", _tokens(history)))
        msgs.append({"role": "assistant", "content": _words(60, f"a{i}w")})
    return out


def test_retention_ratio_cuts_to_that_share_and_the_cut_then_holds() -> None:
    ratio = 0.5
    room = prompt_budget(2048, 64) - _tokens([{"role": "system",
                                               "content": "You are a helpful voice assistant."}])
    turn = 2 * (60 + MESSAGE_OVERHEAD)
    deep = _grow(Truncation(retention_ratio=ratio), 60)
    auto = _grow(Truncation(), 60)
    cuts = [i for i in range(1, len(deep)) if deep[i][0] != deep[i - 1][0]]
    assert cuts, "the conversation never outgrew the context"
    for i in cuts:  # each cut leaves about the ratio's share of the room (within a turn)
        assert deep[i][1] <= ratio * room + turn, (i, deep[i][1])
    # deeper cuts, so fewer of them: the cached prefix survives more turns
    auto_cuts = [i for i in range(1, len(auto)) if auto[i][0] != auto[i - 1][0]]
    assert len(cuts) < len(auto_cuts)
    assert all(tokens <= room for _, tokens in deep)


def test_post_instructions_token_limit_caps_what_follows_the_system_prompt() -> None:
    msgs = _conversation(6) + [{"role": "user", "content": "last"}]
    policy = Truncation(post_instructions_tokens=300)
    assert not needs_fitting(msgs, n_ctx=8192, max_tokens=64)  # it fits the context...
    assert needs_fitting(msgs, n_ctx=8192, max_tokens=64, policy=policy)  # ...not the limit
    fitted = fit_messages(msgs, WordTokenizer(), n_ctx=8192, max_tokens=64, policy=policy)
    assert fitted.messages[0] == msgs[0] and fitted.messages[-1] == msgs[-1]
    assert _tokens(fitted.messages[1:]) <= 300


def test_the_question_a_tool_result_answers_is_kept_with_it() -> None:
    from voxserve.models.tool_schema import prepare_messages

    question = {"role": "user", "content": f"My notes: {_words(800, 'n')}. Weather in Lisbon?"}
    msgs = [{"role": "system", "content": "You are a helpful voice assistant."},
            {"role": "user", "content": _words(100, "x")}, {"role": "assistant", "content": _words(30, "y")},
            question,
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "get_weather", "arguments": '{"city": "Lisbon"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 14}'}]
    kept = fit_messages(prepare_messages(msgs, keep_marks=True), WordTokenizer(), n_ctx=1024,
                        max_tokens=24).messages
    assert not any("_tool_result" in m for m in kept)  # the mark never reaches the engine
    # the question alone fits beside the system prompt, the call and the result
    assert [m["role"] for m in kept] == ["system", "user", "assistant", "user"], kept
    assert kept[1]["content"].endswith("Weather in Lisbon?")
