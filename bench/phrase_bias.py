"""Recognition bias on domain words: word error rates with and without a phrase list.

    .venv/bin/python -m bench.phrase_bias [--json out.json]

Synthesizes sentences that contain product and person names (hibari TTS, in process, no
server) and decodes each with Whisper several ways: no bias, the names as a phrase list
(faster-whisper `hotwords`, what VoxServe sends for Voice Live `phrase_list` and GA `keywords`),
and the same names as the initial prompt (what a transcription `prompt` becomes). It reports the
term error rate (the share of names not found, as words, in the transcript), the WER of the
biased sentences, and the WER of control sentences without any of the names decoded with the
same list, so that a bias which helps the names but hurts everything else shows.
Synthetic speech is cleaner than a phone call: the figures compare the variants, they do not
predict accuracy on real users.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from voxserve.bench.wer import edits, normalize

TERMS = ["VoxServe", "Kubernetes", "Grafana", "PostgreSQL", "Qdrant", "Nexalis", "Quorvia",
         "Lumetra", "Zentrix", "Siobhan", "Nguyen", "Okonkwo", "Wojciech", "Raghunathan",
         "Anneliese", "Tiago", "Oyelaran", "Brightwave", "Halvorsen", "Xiomara"]

SENTENCES = [
    "Please restart the VoxServe cluster before the demo.",
    "Our Kubernetes nodes ran out of memory last night.",
    "Open the Grafana dashboard and check the latency panel.",
    "The PostgreSQL replica is lagging behind the primary.",
    "We store the embeddings in Qdrant for now.",
    "Nexalis shipped the new firmware on Tuesday.",
    "Can you send the Quorvia contract to legal?",
    "The Lumetra sensor reads the temperature twice a second.",
    "Zentrix wants a quote for three hundred licenses.",
    "Siobhan will present the quarterly numbers.",
    "Ask Nguyen whether the build is green.",
    "Doctor Okonkwo moved the appointment to Friday.",
    "Wojciech fixed the login bug this morning.",
    "Priya Raghunathan leads the data team.",
    "Anneliese booked the meeting room for noon.",
    "Tiago is flying to Lisbon on Monday.",
    "Send the invoice to Funmi Oyelaran in accounts.",
    "Brightwave renewed their support plan.",
    "Erik Halvorsen approved the budget.",
    "Xiomara asked for a copy of the Nexalis report.",
]

CONTROLS = [
    "The weather should clear up by the afternoon.",
    "I would like to book a table for two people.",
    "Turn left at the second traffic light.",
    "My train was delayed by twenty minutes.",
    "Could you read that number back to me please?",
]


def _found(term: str, hypothesis: list[str]) -> bool:
    words = normalize(term)
    return any(hypothesis[i:i + len(words)] == words for i in range(len(hypothesis)))


def _score(asr: Any, clips: list[tuple[str, np.ndarray]], **bias: Any) -> dict[str, Any]:
    errors = words = missed = terms = 0
    seconds = 0.0
    misses: list[str] = []
    for text, audio in clips:
        t0 = time.monotonic()
        heard = asr.transcribe(audio, "en", **bias).text
        seconds += time.monotonic() - t0
        ref, hyp = normalize(text), normalize(heard)
        errors += edits(ref, hyp)
        words += len(ref)
        for term in TERMS:
            if term.lower() in text.lower():
                terms += 1
                if not _found(term, hyp):
                    missed += 1
                    misses.append(f"{term} -> {heard!r}")
    return {"wer": round(errors / words, 4), "term_error_rate": round(missed / terms, 4) if terms
            else None, "terms": terms, "decode_s_per_clip": round(seconds / len(clips), 3),
            "misses": misses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the figures here as JSON")
    args = parser.parse_args()

    import soxr

    from voxserve.models.hibari_tts import HibariTtsEngine
    from voxserve.models.whisper_asr import FasterWhisperEngine

    tts, asr = HibariTtsEngine(), FasterWhisperEngine()

    def speak(text: str) -> np.ndarray:
        chunk = tts.synthesize(text)
        return soxr.resample(chunk.audio, chunk.sample_rate, 16_000).astype(np.float32)

    domain = [(t, speak(t)) for t in SENTENCES]
    control = [(t, speak(t)) for t in CONTROLS]
    listed = ", ".join(TERMS)
    variants: dict[str, dict[str, Any]] = {
        "none": {},
        "phrase_list (hotwords)": {"phrases": TERMS},
        "prompt (initial_prompt)": {"prompt": listed},
        "prompt as a sentence": {"prompt": f"Names mentioned: {listed}."},
    }
    report: dict[str, Any] = {}
    for name, bias in variants.items():
        report[name] = {"domain": _score(asr, domain, **bias), "control": _score(asr, control, **bias)}
        d, c = report[name]["domain"], report[name]["control"]
        print(f"{name:26s} term error {d['term_error_rate']:.1%}  domain WER {d['wer']:.1%}  "
              f"control WER {c['wer']:.1%}  decode {d['decode_s_per_clip']:.2f} s/clip")
    for name in variants:
        for miss in report[name]["domain"]["misses"]:
            print(f"  [{name}] missed {miss}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
