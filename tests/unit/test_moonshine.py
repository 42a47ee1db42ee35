"""Moonshine's pieces that need no model: the tokenizer-file parser and detokenizer, the token
cap and the decode loop that honours it (on scripted onnxruntime stand-ins), the English-only
language rule, and the `asr.engine: moonshine` options."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from voxserve.config import MOONSHINE_MODEL, AsrOptions, OptionsError, load_options
from voxserve.models.moonshine_asr import (
    EOS, EXTRA_TOKENS, SAMPLE_RATE, TOKENS_PER_SECOND, MoonshineEngine, detokenize,
    english_or_refuse, parse_tokenizer, token_cap,
)

pytestmark = pytest.mark.unit

SPACE = "\u2581".encode()


def _entry(piece: bytes) -> bytes:
    n = len(piece)
    assert n < 1 << 14
    head = bytes([n]) if n < 128 else bytes([0x80 | (n & 0x7F), n >> 7])
    return head + piece


# -- tokenizer file ---------------------------------------------------------------------------------

def test_parser_reads_one_and_two_byte_lengths_and_empty_pieces() -> None:
    long_piece = bytes(range(256)) * 2 + b"tail"  # 516 bytes: two length bytes, 0x84 0x04
    pieces = [b"<unk>", b"<s>", b"</s>", b"", SPACE + b"the", b"x" * 127, b"y" * 128, long_piece]
    data = b"".join(_entry(p) for p in pieces)
    assert data[data.index(b"y" * 128) - 2:data.index(b"y" * 128)] == b"\x80\x01"
    assert parse_tokenizer(data) == tuple(pieces)
    assert parse_tokenizer(b"") == ()


def test_parser_refuses_a_truncated_file() -> None:
    data = _entry(b"<unk>") + _entry(b"hello")
    with pytest.raises(ValueError, match="token 1"):
        parse_tokenizer(data[:-1])
    with pytest.raises(ValueError, match="length of token 1"):
        parse_tokenizer(_entry(b"<unk>") + b"\x85")


def test_detokenize_joins_bytes_spaces_words_and_drops_specials() -> None:
    pieces = [b"<unk>", b"<s>", b"</s>", SPACE + b"Hello", b",", SPACE + b"caf",
              "é".encode()[:1], "é".encode()[1:], b"<0xE2>", b"<0x82>", b"<0xAC>", b"<<ST_0>>",
              b"<0x0A>", SPACE + b"ok", b"<<"]
    ids = [1, 3, 4, 5, 6, 7, 2, 8, 9, 10, 11, 12, 13, 14, 0, 99]
    # raw bytes and spelled-out byte pieces both make characters across tokens; the padding
    # piece, the special ids and an id outside the vocabulary are dropped; "<<" is text
    assert detokenize(pieces, ids) == "Hello, café€\n ok<<"
    assert detokenize(pieces, [1, 2]) == ""
    # half a character: at the end (a decode cut by the cap) dropped, inside replaced
    assert detokenize(pieces, [3, 6]) == "Hello"
    assert detokenize(pieces, [6, 3]) == "\ufffd Hello"


# -- token cap and the decode loop ------------------------------------------------------------------

def test_token_cap_scales_with_the_audio_and_leaves_room_over_read_speech() -> None:
    assert token_cap(0) == EXTRA_TOKENS
    assert token_cap(SAMPLE_RATE) == 7 + EXTRA_TOKENS  # ceil(6.5)
    assert token_cap(2 * SAMPLE_RATE) == 13 + EXTRA_TOKENS
    assert token_cap(SAMPLE_RATE // 2) >= 4  # "Yes." is two tokens
    caps = [token_cap(n) for n in range(0, 10 * SAMPLE_RATE, 800)]
    assert caps == sorted(caps)
    # the LibriVox clips decode at up to 4.2 tokens/s: the cap must not cut them
    assert token_cap(int(7.1 * SAMPLE_RATE)) > 4.2 * 7.1 * 1.4
    assert TOKENS_PER_SECOND == 6.5


class _Encoder:
    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        n = feeds["input_values"].shape[1]
        assert feeds["attention_mask"].shape == (1, n)
        return [np.zeros((1, max(1, n // 400), 288), np.float32)]


class _Decoder:
    """Scripted merged decoder: emits `script` then EOS (or repeats forever), checking that the
    engine feeds back every cache after the first step and only the self-attention ones later."""

    def __init__(self, script: list[int] | None) -> None:
        self.script = script
        self.steps = 0
        self.encoder_cache: np.ndarray | None = None
        self.names = ["logits"] + [f"present.{layer}.{kind}.{part}" for layer in range(6)
                                   for kind in ("decoder", "encoder") for part in ("key", "value")]

    def run(self, names: list[str], feeds: dict[str, Any]) -> list[np.ndarray]:
        step = self.steps
        self.steps += 1
        assert bool(feeds["use_cache_branch"][0]) == (step > 0)
        # the mask covers the samples (400 a frame here), not the encoder's frames
        assert feeds["encoder_attention_mask"].shape[1] == feeds["encoder_hidden_states"].shape[1] * 400
        past = feeds["past_key_values.0.decoder.key"]
        assert past.shape == (1, 8, step, 36)  # the self-attention cache grows a step at a time
        if step == 0:
            assert names == self.names and feeds["input_ids"].tolist() == [[1]]
            self.encoder_cache = np.full((1, 8, 3, 36), 7.0, np.float32)
        else:
            assert all(".encoder." not in n for n in names)
            assert feeds["past_key_values.3.encoder.value"] is self.encoder_cache  # kept from step one
        token = (self.script[step] if step < len(self.script) else EOS) if self.script is not None else 5
        logits = np.zeros((1, 1, 32), np.float32)
        logits[0, 0, token] = 1.0
        out = {"logits": logits}
        for n in names[1:]:
            out[n] = self.encoder_cache if ".encoder." in n else np.zeros((1, 8, step + 1, 36), np.float32)
        return [out[n] for n in names]


def _engine(decoder: _Decoder) -> MoonshineEngine:
    engine = MoonshineEngine.__new__(MoonshineEngine)  # no model files: scripted sessions instead
    engine._encoder = _Encoder()
    engine._decoder = decoder
    engine._pieces = (b"<unk>", b"<s>", b"</s>", SPACE + b"one", SPACE + b"two", SPACE + b"again")
    engine._first_outputs = decoder.names
    engine._step_outputs = ["logits"] + [n for n in decoder.names if ".decoder." in n]
    return engine


def test_decode_stops_at_eos_and_feeds_back_the_caches() -> None:
    decoder = _Decoder([3, 4])
    tr = _engine(decoder).transcribe(np.zeros(SAMPLE_RATE, np.float32))
    assert tr.text == "one two" and decoder.steps == 3


def test_decode_that_never_ends_stops_at_the_token_cap(caplog: pytest.LogCaptureFixture) -> None:
    for seconds in (0.5, 3.0):
        decoder = _Decoder(None)
        samples = int(seconds * SAMPLE_RATE)
        tr = _engine(decoder).transcribe(np.zeros(samples, np.float32))
        assert decoder.steps == token_cap(samples)
        assert tr.text == " ".join(["again"] * token_cap(samples))
    assert "cap" in caplog.text


# -- languages and options --------------------------------------------------------------------------

def test_english_or_refuse() -> None:
    for request in (None, "en", "EN-us", "en_GB", "eng", ("en", "es"), ("es", "en"), "es-MX, en-US", ()):
        assert english_or_refuse(request) == "en", request
    for request in ("es", ("fr",), "fr,de", ("de", "ja")):
        with pytest.raises(ValueError, match="English only"):
            english_or_refuse(request)
    with pytest.raises(ValueError, match="not one the speech recognizer knows"):
        english_or_refuse("xx")


def test_moonshine_options_take_their_own_defaults_and_refuse_what_it_cannot_do() -> None:
    opts = load_options(data={"asr": {"engine": "moonshine"}}).asr
    assert (opts.model, opts.cpu_threads, opts.language) == (MOONSHINE_MODEL, 1, "en")
    assert AsrOptions.model_validate(opts.model_dump()) == opts  # as the deployment receives it
    assert AsrOptions(engine="moonshine", cpu_threads=2, language="en-US,es").cpu_threads == 2
    assert AsrOptions().engine == "faster_whisper" and AsrOptions().model == "packaged:whisper-base"
    for bad, says in (({"model": "packaged:whisper-base"}, "serves only"), ({"device": "cuda"}, "CPU"),
                      ({"word_timestamps": True}, "word times"), ({"beam_size": 4}, "greedily"),
                      ({"language": "es-MX"}, "English only"), ({"language": "fr,de"}, "English only")):
        with pytest.raises(OptionsError, match=says):
            load_options(data={"asr": {"engine": "moonshine", **bad}})
    with pytest.raises(OptionsError, match="engine"):
        load_options(data={"asr": {"engine": "vosk"}})
