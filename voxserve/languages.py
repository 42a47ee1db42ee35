"""Transcription languages: client language tags to the codes Whisper knows, in one place.

Clients name languages in several ways: OpenAI asks for ISO 639-1 (`"en"`), Voice Live documents
BCP-47 (`"en-US"`) and comma lists for detection (`"en,zh"`), and some apps send ISO 639-2/3
three-letter codes (`"spa"`) or POSIX locales (`"es_MX"`). Whisper only knows its own codes, and
faster-whisper raises on anything else at decode time, so every tag is reduced here, once, when
the client sends it: the protocol validates with these functions (an unknown language is an
`error` naming the parameter) and the ASR engine normalises again, so options and direct callers
get the same rules. Stdlib only: the protocol layer and the engines both import it.

What a session asks of the ASR is a `LanguageRequest`: one code (decode in that language), a
tuple of codes (detect the language among these, then decode in it), or None (not said: the
operator's `asr.language`, or full detection when that is null too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LanguageRequest = str | tuple[str, ...] | None


class UnknownLanguage(ValueError):
    """A tag that names no language Whisper knows; the message says which and why."""


# Whisper's codes (its tokenizer's list, in its order) with the three-letter ISO 639-2/T,
# 639-2/B and common 639-3 individual-language codes that mean the same language.
# "jw" (Javanese) and "haw" (Hawaiian, no 639-1 code) are Whisper's own spellings; "yue" is only
# in large-v3 and later checkpoints, which the engine checks against its loaded model.
_WHISPER: dict[str, tuple[str, ...]] = {
    "en": ("eng",), "zh": ("zho", "chi", "cmn"), "de": ("deu", "ger"), "es": ("spa",),
    "ru": ("rus",), "ko": ("kor",), "fr": ("fra", "fre"), "ja": ("jpn",), "pt": ("por",),
    "tr": ("tur",), "pl": ("pol",), "ca": ("cat",), "nl": ("nld", "dut"), "ar": ("ara", "arb"),
    "sv": ("swe",), "it": ("ita",), "id": ("ind",), "hi": ("hin",), "fi": ("fin",),
    "vi": ("vie",), "he": ("heb",), "uk": ("ukr",), "el": ("ell", "gre"),
    "ms": ("msa", "may", "zsm"), "cs": ("ces", "cze"), "ro": ("ron", "rum"), "da": ("dan",),
    "hu": ("hun",), "ta": ("tam",), "no": ("nor", "nob"), "th": ("tha",), "ur": ("urd",),
    "hr": ("hrv",), "bg": ("bul",), "lt": ("lit",), "la": ("lat",), "mi": ("mri", "mao"),
    "ml": ("mal",), "cy": ("cym", "wel"), "sk": ("slk", "slo"), "te": ("tel",),
    "fa": ("fas", "per", "pes"), "lv": ("lav", "lvs"), "bn": ("ben",), "sr": ("srp",),
    "az": ("aze", "azj"), "sl": ("slv",), "kn": ("kan",), "et": ("est", "ekk"),
    "mk": ("mkd", "mac"), "br": ("bre",), "eu": ("eus", "baq"), "is": ("isl", "ice"),
    "hy": ("hye", "arm"), "ne": ("nep", "npi"), "mn": ("mon", "khk"), "bs": ("bos",),
    "kk": ("kaz",), "sq": ("sqi", "alb", "als"), "sw": ("swa", "swh"), "gl": ("glg",),
    "mr": ("mar",), "pa": ("pan",), "si": ("sin",), "km": ("khm",), "sn": ("sna",),
    "yo": ("yor",), "so": ("som",), "af": ("afr",), "oc": ("oci",), "ka": ("kat", "geo"),
    "be": ("bel",), "tg": ("tgk",), "sd": ("snd",), "gu": ("guj",), "am": ("amh",),
    "yi": ("yid",), "lo": ("lao",), "uz": ("uzb", "uzn"), "fo": ("fao",), "ht": ("hat",),
    "ps": ("pus", "pbt"), "tk": ("tuk",), "nn": ("nno",), "mt": ("mlt",), "sa": ("san",),
    "lb": ("ltz",), "my": ("mya", "bur"), "bo": ("bod", "tib"), "tl": ("tgl", "fil"),
    "mg": ("mlg", "plt"), "as": ("asm",), "tt": ("tat",), "haw": (), "ln": ("lin",),
    "ha": ("hau",), "ba": ("bak",), "jw": ("jav",), "su": ("sun",), "yue": (),
}
WHISPER_LANGUAGES: tuple[str, ...] = tuple(_WHISPER)

_ALIASES: dict[str, str] = {
    **{code: code for code in _WHISPER},
    **{alt: code for code, alts in _WHISPER.items() for alt in alts},
    # 639-1 codes that differ from Whisper's: standard Javanese, Norwegian Bokmål, and the
    # withdrawn Hebrew, Indonesian and Yiddish codes that old Java and Android locales still send
    "jv": "jw", "nb": "no", "iw": "he", "in": "id", "ji": "yi",
}
# a BCP-47 tag's primary language subtag, or a POSIX locale's language (es_MX, en_US.UTF-8)
_PRIMARY = re.compile(r"^([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]{1,8})*(?:\.[A-Za-z0-9-]+)?$")


def normalise(tag: str) -> str:
    """Whisper's code for one language tag: "es-MX" -> "es", "zh-Hans-CN" -> "zh", "SPA" -> "es"."""
    text = tag.strip()
    match = _PRIMARY.match(text)
    if match is None:
        raise UnknownLanguage(f"{tag[:64]!r} is not a language code (expected ISO 639-1 such "
                              "as 'es', ISO 639-2/3 such as 'spa', or BCP-47 such as 'es-MX')")
    code = _ALIASES.get(match.group(1).lower())
    if code is None:
        raise UnknownLanguage(f"language {tag[:64]!r} is not one the speech recognizer knows")
    return code


def normalise_all(tags: str | Iterable[str]) -> tuple[str, ...]:
    """The codes of a comma list ("en-US,es-MX") or of a list of tags, in order, without repeats."""
    parts = tags.split(",") if isinstance(tags, str) else list(tags)
    codes: list[str] = []
    for part in parts:
        if isinstance(part, str) and not part.strip() and isinstance(tags, str):
            continue  # "en, ,es" and a trailing comma: tolerated in a comma list
        if not isinstance(part, str):
            raise UnknownLanguage("each language must be a string")
        code = normalise(part)
        if code not in codes:
            codes.append(code)
    return tuple(codes)


def request(tags: str | Iterable[str] | None) -> LanguageRequest:
    """The ASR request for a client's language setting: None when it names none, one code, or
    the candidates to detect among."""
    if tags is None:
        return None
    codes = normalise_all(tags)
    if not codes:
        return None
    return codes[0] if len(codes) == 1 else codes
