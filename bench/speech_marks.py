"""How well word timestamps and visemes fit the audio, what they cost, and their effect on TTFA.

    .venv/bin/python -m bench.speech_marks --out bench-results/speech-marks [--ttfa-runs 10]

In process, on the packaged TTS (hibari) and a fixed set of agent-style sentences, each
synthesized and trimmed as a response does it:
- word starts and ends against a forced alignment: Whisper base's word timestamps on the same
  audio (Whisper's own error, tens of ms, is part of the figure: it is an upper bound);
- marks against energy at pauses (a stretch of 120 ms or more under -35 dB from the peak,
  between two words), where the audio has a sharp edge: the word before a pause
  ends and its closing viseme (0) falls where the sound stops; the word after starts, and its
  first viseme falls, where the sound starts again;
- the cost of making the marks (visemes, 60 fps blendshapes, event JSON) per second of speech.
With `--ttfa-runs N`, it also starts a server and times N spoken turns on the Voice Live route
with no marks and N with all three, alternating, from the same client (TTFA: end of the user's
speech -> first audible answer audio).
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from voxserve.bench.report import environment, pct
from voxserve.models.base import SpeechChunk
from voxserve.models.speech_trim import trimmed, window_power
from voxserve.models.visemes import SILENCE, visemes
from voxserve.protocol.dialects import Dialect

SENTENCES = (
    "Sure, I can help with that.",
    "The weather in Paris is sunny today, with a high of twenty one degrees.",
    "Your order number 4521 shipped on Monday and should arrive by Thursday.",
    "I have booked a table for four people at seven thirty this evening.",
    "Would you like me to send the confirmation to your email address?",
    "The nearest pharmacy is on Baker Street, about five minutes away on foot.",
    "Let me check that for you. One moment, please.",
    "Your flight to Tokyo leaves at nine fifteen from gate B twelve.",
    "I'm sorry, I could not find a meeting with that name on your calendar.",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar and oxygen.",
    "The museum opens at ten in the morning and closes at six, except on Tuesdays.",
    "Your balance is three hundred and twelve dollars and forty cents.",
    "Okay, I've set a timer for fifteen minutes. I'll let you know when it's done.",
    "The train from Boston to New York takes about four hours.",
    "Thank you for calling. Is there anything else I can help you with today?",
    "Mount Everest is the highest mountain on Earth, at almost nine thousand meters.",
    "Please hold the button for three seconds, then release it and wait for the light.",
    "Your appointment with Doctor Patel is confirmed for Friday at two o'clock.",
    "Shakespeare wrote Hamlet around sixteen hundred, during the reign of Elizabeth.",
    "I've added milk, eggs, and a loaf of bread to your shopping list.",
    "It looks like rain this afternoon, so you might want to bring an umbrella.",
    "The package weighs two point five kilograms and costs nine ninety nine to ship.",
    "Good morning! Your first meeting starts in thirty minutes, in room four.",
    "Chess was invented in India, probably around the sixth century.",
    "Turn left at the next light, then keep right for half a mile.",
)
RATE = 24_000
CLIP = Path(__file__).resolve().parent.parent / "tests" / "data" / \
    "sense_and_sensibility_01_austen_64kb-0880.wav"
WINDOW_S = 0.01
EDGE_DB = 35.0  # below the piece's peak: silence (the trimmed padding is digital silence)
MIN_PAUSE_S = 0.12


def _speech(tts: Any, sentence: str) -> SpeechChunk:
    """The sentence as a response sends it: synthesized, then trimmed (first piece)."""
    return trimmed(tts.synthesize(sentence))


def _edges(audio: np.ndarray) -> list[tuple[float, float]]:
    """(sound stops, sound starts again) for each pause of at least MIN_PAUSE_S."""
    power = window_power(audio, int(RATE * WINDOW_S))
    n = power.size
    loud = power >= power.max() * 10 ** (-EDGE_DB / 10)
    out, k = [], 0
    while k < n:
        if not loud[k]:
            j = k
            while j < n and not loud[j]:
                j += 1
            if 0 < k and j < n and (j - k) * WINDOW_S >= MIN_PAUSE_S:
                out.append((k * WINDOW_S, j * WINDOW_S))
            k = j
        else:
            k += 1
    return out


def _key(text: str) -> str:
    return re.sub(r"[^\w']", "", text).lower()


def in_process(repeats: int) -> dict[str, Any]:
    from voxserve.models.hibari_tts import HibariTtsEngine
    from voxserve.models.whisper_asr import FasterWhisperEngine
    from voxserve.session.speech_marks import MarkOptions, SpeechMarks
    import soxr

    tts = HibariTtsEngine()
    asr = FasterWhisperEngine(word_timestamps=True)
    start_err, end_err = [], []
    pause_word_end, pause_word_start, pause_vis_close, pause_vis_open = [], [], [], []
    synth_s, marks_s, audio_s = 0.0, 0.0, 0.0
    matched = total = inside = 0
    for n, sentence in enumerate(SENTENCES, 1):
        t0 = time.perf_counter()
        chunk = _speech(tts, sentence)
        synth_s += time.perf_counter() - t0
        length = chunk.audio.size / RATE
        audio_s += length
        # the marks as the session makes them, timed over `repeats` passes
        t0 = time.perf_counter()
        for _ in range(repeats):
            marks = SpeechMarks(MarkOptions(True, True, True), {
                "response_id": "r", "item_id": "i", "output_index": 0, "content_index": 0})
            marks.add(0.0, chunk.words, chunk.phones)
            for k in range(1, int(length * 10) + 2):
                for event in marks.due(k / 10):
                    event.render(Dialect.VOICE_LIVE)
        marks_s += (time.perf_counter() - t0) / repeats
        # words against Whisper's alignment
        heard = asr.transcribe(soxr.resample(chunk.audio, RATE, 16_000).astype(np.float32),
                               language="en").words
        a, b = [_key(w.text) for w in chunk.words], [_key(w.text) for w in heard]
        total += len(a)
        for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
            for i, j in zip(range(block.a, block.a + block.size),
                            range(block.b, block.b + block.size), strict=True):
                matched += 1
                start_err.append(1000 * abs(chunk.words[i].start_s - heard[j].start_s))
                end_err.append(1000 * abs(chunk.words[i].end_s - heard[j].end_s))
        # marks against the edges of the pauses
        timeline = visemes(chunk.phones)
        for stop, restart in _edges(chunk.audio):
            if any(w.start_s < (stop + restart) / 2 < w.end_s for w in chunk.words):
                inside += 1  # a quiet stretch inside a word (a closure, a soft fricative)
                continue
            before = [w for w in chunk.words if w.end_s <= (stop + restart) / 2 and w.end_s > w.start_s]
            after = [w for w in chunk.words if w.start_s >= (stop + restart) / 2]
            if before:
                pause_word_end.append(1000 * abs(before[-1].end_s - stop))
            if after:
                pause_word_start.append(1000 * abs(after[0].start_s - restart))
            closes = [v.offset_s for v in timeline if v.viseme_id == SILENCE
                      and stop - 0.2 <= v.offset_s <= restart]
            opens = [v.offset_s for v in timeline if v.viseme_id != SILENCE
                     and stop <= v.offset_s <= restart + 0.2]
            if closes:
                pause_vis_close.append(1000 * abs(closes[0] - stop))
            if opens:
                pause_vis_open.append(1000 * abs(opens[0] - restart))
        print(f"[speech_marks] {n}/{len(SENTENCES)} sentences", flush=True)
    return {
        "sentences": len(SENTENCES), "audio_s": round(audio_s, 2),
        "words_matched_to_whisper": f"{matched}/{total}",
        "word_start_vs_whisper_ms": pct(start_err), "word_end_vs_whisper_ms": pct(end_err),
        "quiet_stretches_inside_words_skipped": inside,
        "at_pauses": {
            "word_end_vs_sound_stop_ms": pct(pause_word_end),
            "word_start_vs_sound_start_ms": pct(pause_word_start),
            "viseme_close_vs_sound_stop_ms": pct(pause_vis_close),
            "viseme_open_vs_sound_start_ms": pct(pause_vis_open)},
        "cost": {"synthesis_ms_per_audio_s": round(1000 * synth_s / audio_s, 2),
                 "marks_ms_per_audio_s": round(1000 * marks_s / audio_s, 3),
                 "marks_over_synthesis": round(marks_s / synth_s, 4)},
    }


async def ttfa(url: str, api_key: str | None, runs: int) -> dict[str, Any]:
    from voxserve.client import read_wav, run_turn

    audio = read_wav(CLIP)
    base = {"turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            "input_audio_transcription": {"model": "whisper-1"}}
    marked = {**base, "output_audio_timestamp_types": ["word"],
              "animation": {"outputs": ["viseme_id", "blendshapes"]}}
    out: dict[str, list[float]] = {"off": [], "on": []}
    for k in range(2 * runs):
        mode = "on" if k % 2 else "off"
        result = await run_turn(url, audio, api_key=api_key, timeout_s=120,
                                session=marked if mode == "on" else base)
        if result.ttfa_s is not None and not result.errors:
            out[mode].append(1000 * result.ttfa_s)
        print(f"[speech_marks] turn {k + 1}/{2 * runs} marks {mode}: "
              f"TTFA {result.ttfa_s and round(1000 * result.ttfa_s)} ms", flush=True)
    off, on = pct(out["off"]), pct(out["on"])
    ratio = (on["p50"] / off["p50"]) if on.get("p50") and off.get("p50") else None
    return {"marks_off_ms": off, "marks_on_ms": on,
            "p50_ratio_on_over_off": round(ratio, 3) if ratio else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-results/speech-marks")
    parser.add_argument("--repeats", type=int, default=20, help="passes when timing the marks")
    parser.add_argument("--ttfa-runs", type=int, default=0,
                        help="spoken turns per mode against a server started here (0: skip)")
    parser.add_argument("--url", help="a running server's Voice Live route instead")
    parser.add_argument("--api-key")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"env": environment(), "in_process": in_process(args.repeats)}
    print(json.dumps(report["in_process"], indent=1), flush=True)
    if args.ttfa_runs:
        from voxserve.bench.server import LocalServer

        server = None
        url = args.url
        if url is None:
            print("[speech_marks] starting voxserve serve", flush=True)
            server = LocalServer(out / "server.log")
            url = f"ws://127.0.0.1:{server.port}/voice-live/realtime"
        try:
            report["ttfa"] = asyncio.run(ttfa(url, args.api_key, args.ttfa_runs))
        finally:
            if server is not None:
                server.stop()
        print(json.dumps(report["ttfa"], indent=1), flush=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"[speech_marks] report in {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
