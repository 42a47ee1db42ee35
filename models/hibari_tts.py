"""Text to speech with hibari-tts 0.2.1 (the fast English default), with per-word timings.

hibari's public API returns audio only. Word timings (needed to truncate a transcript where the
user barged in) come from the model's duration predictor: its rounded per-phoneme durations are the
graph tensor `/Round_output_0`, in units of two 12.5 ms frames. That tensor is not a graph output,
and the `onnx` package is not a dependency, so at load time the model's protobuf is patched by hand
to list it as an extra output (append one ValueInfoProto to GraphProto.output). This is not public
API: hibari-tts is pinned to 0.2.1 and the patch is checked at load (the output must exist and the
durations must add up to the audio length), so a change of model fails loudly, not silently.

Phoneme times map back to words through hibari's own G2P tokens (each token knows its phonemes and
whether whitespace follows), then to the words of the caller's text with a sequence alignment, since
normalisation can rewrite words ("$5" -> "five dollars"); a rewritten span gets the time of the
words it became, shared out by character count.

Only voice "heart" ships inside the wheel; other hibari voices download from a hub on first use, so
they are not offered here.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from dataclasses import dataclass

import numpy as np

from .base import Phone, SpeechChunk, Word
from .speech_trim import pause_after, voiced_span, window_power

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
DURATION_TENSOR = "/Round_output_0"
PAUSES = ".,;:!?…—"
PAUSE_FLOOR_DB = 35.0  # under the run's peak: the sound before a pause has ended
MAX_PHONEMES = 400  # hibari's own per-call limit; longer token runs are cut at punctuation
_WORD_KEY = re.compile(r"[^\w']+")


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def add_graph_output(model: bytes, tensor: str) -> bytes:
    """Return ONNX `model` bytes with `tensor` appended to the graph outputs (type left to inference).

    ModelProto.graph is field 7 and GraphProto.output is field 12 (both length-delimited), so this
    re-emits the top-level fields unchanged except the graph, which gets one extra
    ValueInfoProto{name (field 1)} and a new length prefix.
    """
    out = bytearray()
    i = 0
    found = False
    while i < len(model):
        start = i
        key, i = _varint(model, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(model, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            size, body = _varint(model, i)
            i = body + size
            if key >> 3 == 7:
                name = tensor.encode()
                value_info = b"\x0a" + _encode_varint(len(name)) + name
                graph = model[body:i] + b"\x62" + _encode_varint(len(value_info)) + value_info  # 0x62: field 12, len
                out += _encode_varint(key) + _encode_varint(len(graph)) + graph
                found = True
                continue
        else:
            raise ValueError(f"unexpected protobuf wire type {wire} in the ONNX model")
        out += model[start:i]
    if not found:
        raise ValueError("no graph in the ONNX model")
    return bytes(out)


@dataclass
class _Token:
    text: str  # normalised text of the token (what the G2P read)
    phonemes: str
    space_after: bool


class HibariTtsEngine:
    """`TtsEngine` on hibari (24 kHz, voice "heart").

    threads: onnxruntime intra-op threads (one is plenty: ~100x real time).
    seed: fixes the synthesis noise, so the same text gives the same audio.
    """

    name = "hibari"
    sample_rate = SAMPLE_RATE
    voices: tuple[str, ...] = ("heart",)

    def __init__(self, *, threads: int = 1, seed: int | None = 0, warm_up: bool = True) -> None:
        import hibari.tts as hibari_tts
        import onnxruntime as ort
        from hibari import Hibari
        from hibari.g2p import G2P
        from hibari.voices import voice_path

        # download_missing=False: the bundled voice never downloads; anything else must fail here.
        path = voice_path("heart", download_missing=False)
        with open(path, "rb") as f:
            model = add_graph_output(f.read(), DURATION_TENSOR)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in self._session.get_outputs()]
        if names[-1] != DURATION_TENSOR:
            raise RuntimeError(f"hibari model lacks {DURATION_TENSOR}; outputs are {names}")
        # hibari's own pieces, used directly: the vocabulary, its G2P (American rules for "heart")
        # and its sentence splitter. Its Hibari class is not instantiated: it would load a second,
        # unpatched copy of the model.
        with open(os.path.join(hibari_tts.ASSETS, "vocab.json"), encoding="utf-8") as f:
            self._vocab: dict[str, int] = json.load(f)
        self._g2p = G2P(british=False)
        self._split_sentences = Hibari.split_sentences
        self._seed = seed
        # what a pause is in the model's input: punctuation, and the run's boundary token (0)
        self._pause_ids = frozenset({0} | {i for ch, i in self._vocab.items() if ch in PAUSES})
        if warm_up:
            self.synthesize("Hello.")  # loads the G2P tables and the OOV net now, not on the first turn

    # -- G2P -----------------------------------------------------------------------------------
    def _tokens(self, sentence: str) -> list[_Token]:
        from hibari.g2p.normalize import normalize

        # Same steps as hibari's G2P.__call__, stopping at the tokens so each keeps its phonemes.
        toks = self._g2p.phonemize_tokens(self._g2p.tokenize(normalize(sentence)))
        return [_Token(t.text, t.phonemes or "", bool(t.whitespace)) for t in toks]

    @staticmethod
    def _segments(tokens: list[_Token]) -> list[list[_Token]]:
        """Cut token runs so each stays under MAX_PHONEMES, preferring cuts after punctuation."""
        segs: list[list[_Token]] = []
        cur: list[_Token] = []
        size = 0
        last_punct = -1
        for tok in tokens:
            n = len(tok.phonemes) + 1
            if cur and size + n > MAX_PHONEMES:
                cut = last_punct + 1 if last_punct >= 0 else len(cur)
                segs.append(cur[:cut])
                cur = cur[cut:]
                size = sum(len(t.phonemes) + 1 for t in cur)
                last_punct = -1
            cur.append(tok)
            size += n
            if tok.phonemes and not any(ch.isalnum() for ch in tok.text):
                last_punct = len(cur) - 1
        if cur:
            segs.append(cur)
        return segs

    # -- synthesis -----------------------------------------------------------------------------
    def _run(self, tokens: list[_Token], speed: float, rng: np.random.Generator
             ) -> tuple[np.ndarray, list[tuple[str, float, float]], list[Phone]]:
        """Synthesize one token run; returns audio, (token text, start s, end s) per spoken
        token, and the timed phonemes (punctuation included: it is where the pauses are)."""
        from hibari import dsp

        ids = [0]
        spans: list[tuple[str, int, int]] = []  # token text, first id index, end id index
        symbols: list[tuple[str, int]] = []  # phoneme symbol, its id index
        for k, tok in enumerate(tokens):
            first = len(ids)
            for c in tok.phonemes:
                if c in self._vocab:
                    if c != " ":
                        symbols.append((c, len(ids)))
                    ids.append(self._vocab[c])
            spans.append((tok.text, first, len(ids)))
            if tok.space_after and k < len(tokens) - 1:
                ids.append(self._vocab[" "])
        ids.append(0)
        if len(ids) < 3:
            return np.zeros(0, np.float32), [], []
        out = self._session.run(None, {"ids": np.asarray([ids], np.int64),
                                       "speed": np.asarray([speed], np.float32)})
        lh, th, ln, lr, phi, f0 = (o[0] for o in out[:6])
        audio = dsp.synth(lh, th, ln, lr, phi, f0, rng)
        durations = np.asarray(out[6], np.float64).reshape(-1)
        total = float(durations.sum())
        if durations.shape[0] != len(ids) or total <= 0:
            raise RuntimeError(f"hibari durations do not match the input ({durations.shape[0]} vs {len(ids)} ids)")
        # Seconds per duration unit from the audio itself (2 frames of 12.5 ms at speed-adjusted
        # durations): exact even if the frame math changes.
        unit = len(audio) / SAMPLE_RATE / total
        edges = np.concatenate([[0.0], np.cumsum(durations)]) * unit
        self._end_before_pauses(edges, ids, audio)
        timed = [(text, float(edges[a]), float(edges[b])) for text, a, b in spans if b > a]
        phones = [Phone(c, float(edges[i]), float(edges[i + 1])) for c, i in symbols
                  if edges[i + 1] > edges[i]]
        return audio.astype(np.float32, copy=False), timed, phones

    def _end_before_pauses(self, edges: np.ndarray, ids: list[int], audio: np.ndarray) -> None:
        """End each phoneme that runs into a pause where its sound ends (edges, in place).

        The duration model gives the phoneme before a pause (punctuation, or the end of the
        run) time the vocoder spends fading to silence: measured on bench.speech_marks's
        sentences, the last phoneme's end fell a median 295 ms after the sound stopped, so the
        word's end and the mouth's closing came that late. The sound's end is read off the
        audio: the last 10 ms window within PAUSE_FLOOR_DB of the run's peak.
        """
        power = window_power(audio, SAMPLE_RATE // 100)
        n = power.size
        if n == 0:
            return
        loud = power >= power.max() * 10.0 ** (-PAUSE_FLOOR_DB / 10.0)
        for i in range(1, len(ids) - 1):
            if ids[i + 1] not in self._pause_ids or ids[i] in self._pause_ids:
                continue
            first, last = int(edges[i] * 100), min(n, int(np.ceil(edges[i + 1] * 100)))
            heard = np.flatnonzero(loud[first:last])
            if heard.size:
                edges[i + 1] = max(edges[i], min(edges[i + 1], (first + heard[-1] + 1) / 100))

    def synthesize(self, text: str, voice: str | None = None, speed: float = 1.0) -> SpeechChunk:
        if voice not in (None, "", "heart"):
            raise ValueError(f"hibari voice {voice!r} is not available offline; voices: {self.voices}")
        parts: list[np.ndarray] = []
        timed: list[tuple[str, float, float]] = []
        phones: list[Phone] = []
        offset = 0.0
        previous = ""  # the text of the part before: its ending chooses the pause between them
        # A generator per call: numpy Generators are not thread-safe and deployments call concurrently.
        rng = np.random.default_rng(self._seed)
        for sentence in self._split_sentences(text):
            for seg in self._segments(self._tokens(sentence)):
                audio, spans, seg_phones = self._run(seg, speed, rng)
                # Each run is padded with ~0.3 s of silence before and ~0.4 s after; keep only
                # the voiced span and the pause the text calls for (models/speech_trim.py).
                start, end = voiced_span(audio, SAMPLE_RATE)
                if end <= start:
                    continue
                pause = np.zeros(int(round(pause_after(previous) * SAMPLE_RATE)) if parts else 0,
                                 np.float32)
                shift = offset + (pause.size - start) / SAMPLE_RATE
                timed += [(t, s + shift, e + shift) for t, s, e in spans]
                # phonemes in the cut silence go (punctuation's pause is the one added here)
                lo = offset + pause.size / SAMPLE_RATE
                hi = lo + (end - start) / SAMPLE_RATE
                phones += [Phone(p.symbol, max(p.start_s + shift, lo), min(p.end_s + shift, hi))
                           for p in seg_phones if p.end_s + shift > lo and p.start_s + shift < hi]
                parts += [pause, audio[start:end]]
                offset += (pause.size + end - start) / SAMPLE_RATE
                previous = "".join(t.text + (" " if t.space_after else "") for t in seg)
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        timed = [(t, min(max(s, 0.0), offset), min(max(e, 0.0), offset)) for t, s, e in timed]
        return SpeechChunk(audio=audio, sample_rate=SAMPLE_RATE, text=text,
                           words=self._align(text, timed), phones=tuple(phones))

    # -- words ---------------------------------------------------------------------------------
    @staticmethod
    def _align(text: str, timed: list[tuple[str, float, float]]) -> tuple[Word, ...]:
        """Times of the caller's words from the timed G2P tokens.

        Tokens are first merged into whitespace-delimited words (the G2P splits "don't" style
        clitics and punctuation off), then aligned to the caller's words; words the normaliser
        rewrote share the span of what they became, by character count.
        """
        spoken = [(t, s, e) for t, s, e in timed if _WORD_KEY.sub("", t)]
        originals = [w for w in text.split() if _WORD_KEY.sub("", w)]
        if not spoken or not originals:
            return ()
        a = [_WORD_KEY.sub("", w).lower() for w in originals]
        b = [_WORD_KEY.sub("", t).lower() for t, _, _ in spoken]
        words: list[Word] = []
        last_end = 0.0
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                    words.append(Word(_strip(originals[i]), spoken[j][1], spoken[j][2]))
                    last_end = spoken[j][2]
            elif op == "replace":
                start, end = spoken[j1][1], spoken[j2 - 1][2]
                sizes = [max(1, len(a[i])) for i in range(i1, i2)]
                t = start
                for i, size in zip(range(i1, i2), sizes, strict=True):
                    dur = (end - start) * size / sum(sizes)
                    words.append(Word(_strip(originals[i]), t, t + dur))
                    t += dur
                last_end = end
            elif op == "delete":  # a word with no sound of its own: zero length where it falls
                for i in range(i1, i2):
                    words.append(Word(_strip(originals[i]), last_end, last_end))
            else:  # "insert": sound with no word of the text (normaliser additions); its time is skipped
                last_end = spoken[j2 - 1][2]
        return tuple(words)


def _strip(word: str) -> str:
    # Keep inner punctuation ("don't", "9.99") but not quotes/commas around the word.
    return word.strip("\"'“”‘’.,;:!?()[]")
