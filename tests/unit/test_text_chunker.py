"""Where streamed LLM text is cut into pieces for TTS."""

from __future__ import annotations

import pytest

from voxserve.session.text_chunker import TextChunker, speakable

pytestmark = pytest.mark.unit


def _feed(text: str, chunker: TextChunker | None = None) -> list[str]:
    chunker = chunker or TextChunker()
    pieces: list[str] = []
    for i in range(0, len(text), 3):  # token-sized increments
        pieces += chunker.push(text[i:i + 3])
    return pieces + chunker.flush()


def test_sentences_are_pieces() -> None:
    assert _feed("Hi there. How are you? Fine!") == ["Hi there.", "How are you?", "Fine!"]


def test_first_piece_may_end_at_a_clause() -> None:
    assert _feed("Well, of course, I can help you with that today.")[0] == "Well, of course,"


def test_first_piece_is_cut_before_a_conjunction_in_a_long_sentence() -> None:
    pieces = _feed("He was a kind young man because he worked hard every single day.",
                   TextChunker(first_max_words=7))
    assert pieces[0] == "He was a kind young man"
    assert pieces[1].startswith("because")


def test_first_piece_is_bounded_without_any_break() -> None:
    pieces = _feed("The quick brown fox jumps over the lazy dog near the river bank today.")
    assert pieces[0] == "The quick brown fox jumps"
    assert " ".join(pieces) == "The quick brown fox jumps over the lazy dog near the river bank today."


def test_a_partial_last_word_is_never_cut() -> None:
    chunker = TextChunker(first_max_words=3)
    assert chunker.push("one two thr") == []
    assert chunker.push("ee four") == ["one two three"]


def test_markdown_is_not_spoken() -> None:
    assert speakable("**Sure**, see [the docs](http://x) `now`") == "Sure, see  now"


@pytest.mark.parametrize(("text", "first"), [
    ("Dr. Smith will see you at the clinic tomorrow.", "Dr. Smith will see you at the"),
    ("Try e.g. the small one, it works well for most people here.",
     "Try e.g. the small one,"),
    ("J. R. R. Tolkien wrote it.", "J. R. R. Tolkien wrote it."),
])
def test_an_abbreviation_or_initial_ends_no_sentence(text: str, first: str) -> None:
    assert _feed(text, TextChunker(first_max_words=7))[0] == first


@pytest.mark.parametrize(("text", "first"), [
    # the seventh word (where a piece without a break ends) starts a unit: the cut moves on
    ("Your table for tonight is at 7 pm near the window.", "Your table for tonight is at 7 pm"),
    ("The city is home to about 3 million people living there.",
     "The city is home to about 3 million"),
    ("We flew all the way to New York City last summer with friends.",
     "We flew all the way to New York City"),
])
def test_a_cut_between_words_never_splits_a_number_or_a_name(text: str, first: str) -> None:
    pieces = _feed(text, TextChunker(first_max_words=7))
    assert pieces[0] == first and " ".join(pieces) == text


def test_a_cut_waits_for_the_next_word_to_tell() -> None:
    chunker = TextChunker(first_max_words=3)
    assert chunker.push("meet in New ") == []  # "New" may start a name: wait
    assert chunker.push("York today") == ["meet in New York"]
    chunker = TextChunker(first_max_words=2)
    assert chunker.push("at 7 p") == []  # "p" may grow into "pm"
    assert chunker.push("m sharp") == ["at 7 pm"]


def test_a_short_answer_still_ends_its_sentence() -> None:
    assert _feed("No. I am afraid not.") == ["No.", "I am afraid not."]
