"""Speech to text with Moonshine tiny-en on plain onnxruntime: a fast, English-only ASR engine.

Moonshine's encoder takes the raw 16 kHz samples (no 30 s padding, unlike Whisper), so a decode
costs in proportion to the audio: ~70 ms for a 3 s turn on one thread here, against ~750 ms for
Whisper base on two (`docs/perf/asr-report.md`, which also has the WER of both, clean and in
noise). That makes re-decoding a growing turn for partial transcripts affordable, at about a third
of a core per talking user every 250 ms. It was measured on turns framed as the session frames
them (300 ms before the speech, the 200 ms pause after): speech cut tight at the end can go
badly wrong ("3." for a whole sentence), and partials over little speech or cut mid-word can loop
until the token cap ("amiable, amiable, ...") or hallucinate.

The weights are package data of `moonshine-voice==0.1.0`, installed with `--no-deps` by
`scripts/setup`; its own code (a native library with a downloader) is never imported: the files
are found through the distribution's metadata and sha256-checked (`models.weights`).

What it cannot do, and how the `AsrEngine` calls are mapped:
- English only. `language` None, "en", "en-US" or a candidate list that contains English decode
  in English; a request naming only other languages raises `ValueError`, as Whisper's engine does
  for a language its checkpoint lacks.
- No prompt conditioning, no phrase list and no word times: `prompt`, `phrases` and
  `word_timestamps` are accepted (the deployment passes them for every engine) and ignored;
  `Transcript.words` is always empty.

Decoding loop (read from the two graphs): the encoder maps `input_values` [1, N] and an all-ones
`attention_mask` [1, N] to `last_hidden_state` [1, T, 288]; the merged decoder graph then runs
greedily, one token a step, with the key/value caches of its six layers passed back in. The first
step (`use_cache_branch` false, token BOS) computes the cross-attention caches from the encoder
output; later steps reuse them and extend only the self-attention (`.decoder.`) caches.
"""

from __future__ import annotations

import codecs
import logging
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxserve.languages import LanguageRequest, normalise, normalise_all

from .base import Transcript
from .weights import MOONSHINE_DIST, MOONSHINE_SHA256, distribution_files

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
BOS, EOS = 1, 2
FIRST_TEXT_ID = 3  # ids 0-2 are <unk>, <s>, </s>
SPACE = "\u2581"  # SentencePiece's word-start mark
# The encoder's convolutions need 895 samples for one output frame (fewer is an onnxruntime
# error). 100 ms is shorter than any word, so below it there is nothing to decode.
MIN_SAMPLES = SAMPLE_RATE // 10
# Greedy decoding can loop; the cap bounds a decode's cost. Read speech here runs at 3.6-4.2
# tokens a second (LibriVox clips, punctuation included), so 6.5 leaves room for fast talkers;
# the constant covers one-word turns ("Yes." is two tokens).
TOKENS_PER_SECOND = 6.5
EXTRA_TOKENS = 4
_LAYERS = 6
_HEADS, _HEAD_DIM = 8, 36
_BYTE_PIECE = re.compile(rb"<0x([0-9A-Fa-f]{2})>")  # SentencePiece byte fallback, if spelled out
_PADDING_PIECE = re.compile(rb"<<ST_\d+>>")  # ids 32000+ pad the vocabulary to 32768


def parse_tokenizer(data: bytes) -> tuple[bytes, ...]:
    """The bytes of each token (id = position) in a Moonshine `tokenizer.bin`.

    Each entry is a length, then that many bytes. Lengths under 128 take one byte; longer ones
    two, base 128 with the low digit first and the first byte's high bit set (length = first -
    128 + 128 * second). The tiny-en file never needs the long form (its longest piece is 48
    bytes), so that form is taken from the format's description, not checked on real data.
    """
    pieces: list[bytes] = []
    at = 0
    while at < len(data):
        length = data[at]
        at += 1
        if length & 0x80:
            if at >= len(data):
                raise ValueError(f"tokenizer file ends inside the length of token {len(pieces)}")
            length = (length & 0x7F) | (data[at] << 7)
            at += 1
        if at + length > len(data):
            raise ValueError(f"tokenizer file ends inside token {len(pieces)} "
                             f"({length} bytes wanted, {len(data) - at} left)")
        pieces.append(data[at:at + length])
        at += length
    return tuple(pieces)


def detokenize(pieces: Sequence[bytes], ids: Sequence[int]) -> str:
    """The text of `ids`: pieces joined as bytes (a character may span byte-fallback tokens),
    decoded as UTF-8, word marks made spaces; special and padding tokens are dropped, and so is
    a character left unfinished at the end."""
    out = bytearray()
    for token in ids:
        if token < FIRST_TEXT_ID or token >= len(pieces):
            continue
        piece = pieces[token]
        byte = _BYTE_PIECE.fullmatch(piece)
        if byte is not None:
            out.append(int(byte.group(1), 16))
        elif not _PADDING_PIECE.fullmatch(piece):
            out += piece
    # A decode stopped by the token cap can end inside a character: drop that tail rather than
    # show a replacement mark (an invalid byte elsewhere is still replaced).
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(bytes(out), final=False)
    return text.replace(SPACE, " ").strip()


def token_cap(samples: int) -> int:
    """The most tokens one decode of `samples` of 16 kHz audio may produce."""
    return math.ceil(samples / SAMPLE_RATE * TOKENS_PER_SECOND) + EXTRA_TOKENS


def english_or_refuse(language: LanguageRequest | Sequence[str]) -> str:
    """"en" when the request allows English (or names nothing); else `ValueError`. Unknown tags
    raise `voxserve.languages.UnknownLanguage` (a `ValueError`), as for Whisper."""
    if language is None:
        return "en"
    if isinstance(language, str):
        candidates = normalise_all(language) if "," in language else (normalise(language),)
    else:
        candidates = normalise_all(language)
    if candidates and "en" not in candidates:
        raise ValueError(f"Moonshine tiny-en decodes English only, not {', '.join(candidates)}")
    return "en"


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # A decoder step is a few ms of small ops: with more than one thread, idle workers would
    # otherwise spin between ops and take the cycles the LLM and TTS need on a small box.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class MoonshineEngine:
    """`AsrEngine` on Moonshine tiny-en. Safe to call from several threads at once: the two
    onnxruntime sessions are shared (their `run` is thread-safe) and every decode keeps its
    caches in locals.

    cpu_threads: onnxruntime intra-op threads per decode. 1 by default: concurrent decodes (the
    deployment's `num_workers`) use the cores better than threads inside one small decode.
    """

    name = "moonshine-tiny-en"
    languages: tuple[str, ...] = ("en",)

    def __init__(self, *, cpu_threads: int = 1, warm_up: bool = True) -> None:
        t0 = time.monotonic()
        files = distribution_files(MOONSHINE_DIST, MOONSHINE_SHA256)
        by_name = {Path(k).name: v for k, v in files.items()}
        self._encoder = _session(by_name["encoder_model.ort"], cpu_threads)
        self._decoder = _session(by_name["decoder_model_merged.ort"], cpu_threads)
        self._pieces = parse_tokenizer(by_name["tokenizer.bin"].read_bytes())
        outputs = [o.name for o in self._decoder.get_outputs()]
        # first step: logits and every cache; later steps: logits and the self-attention caches
        self._first_outputs = outputs
        self._step_outputs = ["logits"] + [n for n in outputs if n.startswith("present.") and ".decoder." in n]
        log.info("moonshine tiny-en loaded in %.2f s", time.monotonic() - t0)
        if warm_up:
            # the first run allocates onnxruntime's buffers: pay it at start-up, not on a turn
            self.transcribe(np.zeros(SAMPLE_RATE, np.float32))

    def transcribe(self, audio_16k: np.ndarray, language: LanguageRequest | Sequence[str] = None,
                   prompt: str | None = None, *, phrases: Sequence[str] = (),
                   word_timestamps: bool | None = None) -> Transcript:
        """Decode one utterance in English. `prompt`, `phrases` and `word_timestamps` have no
        effect: Moonshine has no prompt conditioning, no phrase biasing and no word alignment."""
        chosen = english_or_refuse(language)
        audio = np.ascontiguousarray(audio_16k, dtype=np.float32).reshape(-1)
        t0 = time.monotonic()
        text = "" if audio.size < MIN_SAMPLES else detokenize(self._pieces, self._decode(audio))
        return Transcript(text=text, language=chosen, audio_seconds=audio.size / SAMPLE_RATE,
                          decode_seconds=time.monotonic() - t0)

    def _decode(self, audio: np.ndarray) -> list[int]:
        mask = np.ones((1, audio.size), np.int64)
        hidden = self._encoder.run(["last_hidden_state"],
                                   {"input_values": audio[None, :], "attention_mask": mask})[0]
        empty = np.zeros((1, _HEADS, 0, _HEAD_DIM), np.float32)
        caches = {f"past_key_values.{layer}.{kind}.{part}": empty
                  for layer in range(_LAYERS) for kind in ("decoder", "encoder") for part in ("key", "value")}
        tokens: list[int] = []
        cap = token_cap(audio.size)
        token = BOS
        for step in range(cap):
            names = self._step_outputs if step else self._first_outputs
            results = self._decoder.run(names, {
                "input_ids": np.array([[token]], np.int64),
                "encoder_hidden_states": hidden,
                # over the samples, as for the encoder: a mask over the T frames goes wrong
                # past ~5 s of audio (measured by the team)
                "encoder_attention_mask": mask,
                "use_cache_branch": np.array([step > 0]),
                **caches,
            })
            for name, value in zip(names[1:], results[1:], strict=True):
                caches["past_key_values." + name.removeprefix("present.")] = value
            token = int(results[0][0, -1].argmax())
            if token == EOS:
                return tokens
            tokens.append(token)
        log.warning("moonshine stopped at its cap of %d tokens for %.2f s of audio (a loop, or "
                    "speech faster than %.1f tokens/s)", cap, audio.size / SAMPLE_RATE, TOKENS_PER_SECOND)
        return tokens
