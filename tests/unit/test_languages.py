"""The language normaliser: every tag a client or an operator may send, to Whisper's codes."""

from __future__ import annotations

import pytest

from voxserve.languages import (
    WHISPER_LANGUAGES, UnknownLanguage, normalise, normalise_all, request,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("tag", "code"), [
    ("es", "es"), ("es-MX", "es"), ("en-US", "en"), ("EN-gb", "en"), ("zh-Hans-CN", "zh"),
    ("zh-TW", "zh"), ("sr-Latn-RS", "sr"), ("es_MX", "es"), ("en_US.UTF-8", "en"),
    ("spa", "es"), ("SPA", "es"), ("deu", "de"), ("ger", "de"), ("fra", "fr"), ("fre", "fr"),
    ("cmn", "zh"), ("fil-PH", "tl"), ("nb-NO", "no"), ("nob", "no"), ("nn-NO", "nn"),
    ("jv", "jw"), ("jav", "jw"), ("haw", "haw"), ("iw", "he"), (" pt-BR ", "pt"), ("yue", "yue"),
])
def test_tags_reduce_to_whisper_codes(tag: str, code: str) -> None:
    assert normalise(tag) == code


@pytest.mark.parametrize("tag", ["xx", "xx-YY", "klingon", "tlh", "", "e", "en--US", "en,es",
                                 "123", "en-US-"])
def test_unknown_or_malformed_tags_are_refused(tag: str) -> None:
    with pytest.raises(UnknownLanguage):
        normalise(tag)


def test_every_whisper_code_maps_to_itself_and_no_alias_shadows_one() -> None:
    assert len(WHISPER_LANGUAGES) == 100
    for code in WHISPER_LANGUAGES:
        assert normalise(code) == code
        assert normalise(code.upper()) == code


def test_lists_keep_order_and_drop_repeats() -> None:
    assert normalise_all("en-US,es-MX") == ("en", "es")
    assert normalise_all("es, en ,es-ES,") == ("es", "en")
    assert normalise_all(["fr-CA", "fr-FR", "de"]) == ("fr", "de")
    with pytest.raises(UnknownLanguage):
        normalise_all("en,xx")
    with pytest.raises(UnknownLanguage):
        normalise_all(["en", ""])


def test_request_is_none_one_code_or_the_candidates() -> None:
    assert request(None) is None
    assert request("") is None
    assert request("es-MX") == "es"
    assert request("en-US,en-GB") == "en"  # one language twice is a fixed language
    assert request("en-US,es-MX") == ("en", "es")
    assert request(["ja", "ko"]) == ("ja", "ko")
