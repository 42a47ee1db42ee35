"""Speech to text with faster-whisper (CTranslate2), the CPU default ASR engine.

Whisper decodes a whole utterance at a time (its cost is nearly flat in utterance length), so the
engine is called on a turn's audio so far, never on a stream of partials. The defaults are those
of `AsrOptions` in `voxserve/config.py`, which records why (int8, two CPU threads, greedy, no word
times); `num_workers` allows concurrent decodes, and there is no built-in VAD (VoxServe runs Silero
upstream). The model is the packaged Whisper base unless a local directory is given; GPU
configurations may pass a model name, which faster-whisper then resolves through its own cache.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from voxserve.languages import LanguageRequest, normalise, normalise_all

from .base import Transcript, Word

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


class FasterWhisperEngine:
    """`AsrEngine` on faster-whisper.

    model: a local CTranslate2 model directory, a model name (GPU configurations with a hub cache),
    or None for the packaged Whisper base assembled by `models.weights`.
    beam_size: 1 (greedy) by default. Measured on the five LibriVox test clips (3-7 s, one thread):
    beam 5 gave the same transcripts (WER 0-5 %, mean 2 %) in the same wall time, because the 30 s
    encoder pass dominates; greedy keeps decoder work (and contention with the LLM) lower.
    word_timestamps: align word times, off by default (`AsrOptions`); a call can ask for them.
    Measured cost: +5-8 % decode time (2.46 s -> 2.60 s per clip).
    """

    name = "faster-whisper"

    def __init__(self, model: str | Path | None = None, *, device: str = "cpu", compute_type: str = "int8",
                 cpu_threads: int = 2, num_workers: int = 1, beam_size: int = 1,
                 word_timestamps: bool = False, warm_up: bool = True) -> None:
        # faster-whisper imports huggingface_hub; make sure nothing is ever fetched for the default.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        if model is None:
            from .weights import whisper_base_dir
            model = whisper_base_dir()
        self.model_ref = str(model)
        self.beam_size = beam_size
        self.word_timestamps = word_timestamps
        t0 = time.monotonic()
        self._model = WhisperModel(self.model_ref, device=device, compute_type=compute_type,
                                   cpu_threads=cpu_threads, num_workers=num_workers,
                                   local_files_only=Path(self.model_ref).is_dir())
        log.info("whisper loaded %s in %.1f s", self.model_ref, time.monotonic() - t0)
        # Whisper's language list in token order; the checkpoint may know fewer (base: 99, no
        # Cantonese, which large-v3 added)
        multilingual = self._model.model.is_multilingual
        self.languages: tuple[str, ...] = (
            tuple(self._model.supported_languages[:self._model.model.num_languages])
            if multilingual else ("en",))
        if warm_up:
            # First decode allocates buffers and pages in weights: pay that at start-up, not on a turn.
            self.transcribe(np.zeros(SAMPLE_RATE, np.float32), language="en")

    def transcribe(self, audio_16k: np.ndarray, language: LanguageRequest | Sequence[str] = None,
                   prompt: str | None = None, *, phrases: Sequence[str] = (),
                   word_timestamps: bool | None = None) -> Transcript:
        """Decode one utterance. `language`: a code (or any tag `voxserve.languages` knows), the
        candidates to detect among, or None to detect among all of Whisper's languages.
        `prompt`: text the decoder is conditioned on (Whisper's initial prompt). `phrases`: words
        and names to favour (a phrase list), given to faster-whisper as hotwords."""
        audio = np.ascontiguousarray(audio_16k, dtype=np.float32).reshape(-1)
        words_on = self.word_timestamps if word_timestamps is None else word_timestamps
        t0 = time.monotonic()
        chosen = self.choose_language(audio, language)
        segments, info = self._model.transcribe(
            audio,
            language=chosen,
            initial_prompt=prompt,
            # For one 30 s window hotwords and the initial prompt are the same tokens before the
            # start token (hotwords first); hotwords also stay for later windows and leave the
            # prompt to the client's own text. Measured in bench/phrase_bias.py.
            hotwords=", ".join(phrases) if phrases else None,
            beam_size=self.beam_size,
            vad_filter=False,  # VoxServe runs its own VAD
            word_timestamps=words_on,
            # One utterance per call: conditioning on earlier windows only matters for long audio
            # and risks repetition loops.
            condition_on_previous_text=False,
            without_timestamps=not words_on,  # timestamp tokens cost decode steps we do not use
        )
        texts: list[str] = []
        words: list[Word] = []
        for seg in segments:  # a generator: decoding happens while iterating
            texts.append(seg.text)
            for w in seg.words or ():
                words.append(Word(w.word.strip(), float(w.start), float(w.end),
                                  float(w.probability)))
        return Transcript(
            text="".join(texts).strip(),
            language=info.language,
            audio_seconds=len(audio) / SAMPLE_RATE,
            words=tuple(words),
            decode_seconds=time.monotonic() - t0,
        )

    def choose_language(self, audio: np.ndarray,
                        language: LanguageRequest | Sequence[str]) -> str | None:
        """The language to decode in: the one asked for, or the most probable of the candidates
        (None: faster-whisper detects among all). Restricting detection costs what full detection
        does, one extra encoder pass on the first 30 s; a single language costs none."""
        if language is None:
            return None
        if isinstance(language, str):
            candidates = normalise_all(language) if "," in language else (normalise(language),)
        else:
            candidates = normalise_all(language)
        unknown = [c for c in candidates if c not in self.languages]
        if unknown:
            raise ValueError(f"this Whisper checkpoint does not know {', '.join(unknown)}")
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        _, _, probs = self._model.detect_language(audio=audio)
        by_language = dict(probs)
        return max(candidates, key=lambda c: by_language.get(c, 0.0))
