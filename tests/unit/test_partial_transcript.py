"""Append-only partial transcripts from successive decodes (voxserve/session/partial_transcript.py)."""

from __future__ import annotations

import pytest

from voxserve.session.partial_transcript import PartialTranscript

pytestmark = pytest.mark.unit


def test_a_word_is_sent_once_two_decodes_agree_and_it_is_not_the_newest() -> None:
    p = PartialTranscript()
    assert p.update("The") == ""  # the newest word may be cut off by the end of the audio
    assert p.update("The") == ""  # agreed, but still the newest
    assert p.update("The wet") == "The"
    assert p.update("The weather") == ""  # "wet" was revised, so not agreed
    assert p.sent_words == 1


def test_deltas_concatenate_to_the_agreed_words() -> None:
    p = PartialTranscript()
    deltas = [p.update(h) for h in ["The", "The wet", "The weather is", "The weather is nice",
                                    "The weather is nice today"]]
    assert "".join(deltas) == "The weather is nice"
    assert deltas[0] == "" and not deltas[-1].startswith("The")


def test_case_and_punctuation_revisions_do_not_block_agreement() -> None:
    p = PartialTranscript()
    p.update("hello there")
    assert p.update("Hello, there my") == "Hello, there"


def test_a_revised_word_is_never_resent_and_holds_further_deltas() -> None:
    p = PartialTranscript()
    p.update("I want a")
    assert p.update("I want a tea") == "I want a"
    # the decoder changes its mind about a sent word: nothing is added on top of it
    assert p.update("I won a tea please") == ""
    assert p.update("I won a tea please now") == ""
    assert p.remainder("I won a tea please.") is None


def test_remainder_completes_the_sent_words_into_the_final() -> None:
    p = PartialTranscript()
    p.update("book a")
    p.update("book a table for")
    assert p.sent_words == 2
    assert p.remainder("Book a table for two.") == " table for two."
    assert p.remainder("Book a") == ""


def test_without_partials_the_final_is_the_whole_delta() -> None:
    assert PartialTranscript().remainder("Hello there.") == "Hello there."


def test_a_looping_decode_is_ignored() -> None:
    p = PartialTranscript()
    p.update("Had he married a")
    assert p.update("Had he married a more amiable, amiable, amiable, amiable,") == ""
    assert p.update("Had he married a more amiable woman") == "Had he married a"
