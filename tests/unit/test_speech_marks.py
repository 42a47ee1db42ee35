"""Word timestamps, visemes and blendshapes: the tables, the timing rules and the Voice Live
events riding on a response's audio (fake pipeline; the real TTS is in tests/e2e)."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import numpy as np
import pytest

from tests.unit.fakes import FakePipeline, start_session, stop_session
from voxserve.models.base import Phone
from voxserve.models.blendshapes import FPS, NAMES, POSES, Blendshaper
from voxserve.models.visemes import MAX_VISEME, PUNCTUATION, STRESS, VISEMES, Viseme, visemes
from voxserve.protocol.dialects import Dialect

pytestmark = pytest.mark.unit

MARKS = {"response.audio_timestamp.delta", "response.animation_viseme.delta",
         "response.animation_blendshapes.delta"}


def _phones(*spec: tuple[str, float, float]) -> list[Phone]:
    return [Phone(s, a, b) for s, a, b in spec]


# ---- the viseme table and timeline ---------------------------------------------------------------


def test_every_letter_of_the_tts_alphabet_has_a_viseme() -> None:
    import hibari.tts as hibari_tts

    with open(os.path.join(hibari_tts.ASSETS, "vocab.json"), encoding="utf-8") as f:
        alphabet = set(json.load(f))
    # marks that only modify a neighbour (length, aspiration, palatalisation, nasal, tones)
    modifiers = set(" ːʰʲ̃ᵝ") | STRESS
    unmapped = {ch for ch in alphabet - modifiers - PUNCTUATION if ch not in VISEMES}
    assert unmapped == set()
    assert all(0 <= v <= MAX_VISEME for ids in VISEMES.values() for v in ids)


def test_stress_time_goes_to_the_vowel_and_diphthongs_split() -> None:
    # "name" as hibari times it: n, stress mark (75 ms of its own), A (= eɪ), m
    out = visemes(_phones(("n", 0.0, 0.05), ("ˈ", 0.05, 0.125), ("A", 0.125, 0.175),
                          ("m", 0.175, 0.2)))
    assert [v.viseme_id for v in out] == [19, 4, 6, 21, 0]
    assert [v.offset_s for v in out] == pytest.approx([0.0, 0.05, 0.1125, 0.175, 0.2])


def test_pauses_close_the_mouth_word_gaps_do_not() -> None:
    out = visemes(_phones(("m", 0.0, 0.1), ("ɑ", 0.15, 0.3),     # a 50 ms word gap: held
                          ("p", 0.6, 0.7), (",", 0.7, 0.75), ("i", 0.75, 0.9)))
    assert out == [Viseme(0.0, 21), Viseme(0.15, 2), Viseme(0.3, 0), Viseme(0.6, 21),
                   Viseme(0.7, 0), Viseme(0.75, 6), Viseme(0.9, 0)]
    assert visemes([]) == []


def test_repeats_collapse_and_offsets_strictly_increase() -> None:
    out = visemes(_phones(("t", 0.0, 0.05), ("d", 0.05, 0.1), ("n", 0.1, 0.1001),
                          ("s", 0.1001, 0.1001), ("ʃ", 0.1001, 0.2)))
    assert [v.viseme_id for v in out] == [19, 16, 0]
    assert all(b.offset_s > a.offset_s for a, b in zip(out, out[1:], strict=False))


# ---- blendshapes ----------------------------------------------------------------------------------


def test_blendshape_names_are_the_55_of_azure() -> None:
    assert len(NAMES) == 55 and len(set(NAMES)) == 55
    assert NAMES[17] == "jawOpen" and NAMES[-3:] == ("headRoll", "leftEyeRoll", "rightEyeRoll")
    assert POSES.shape == (MAX_VISEME + 1, 55) and not POSES[0].any()
    assert POSES.min() >= 0.0 and POSES.max() <= 1.0


def test_blendshape_frames_follow_the_visemes_smoothly_across_calls() -> None:
    faces = Blendshaper()
    faces.add([Viseme(0.0, 2), Viseme(0.3, 21), Viseme(0.6, 0)])
    first, a = faces.frames(0.25)
    second, b = faces.frames(1.0)
    assert (first, second) == (0, len(a)) and len(a) + len(b) == FPS  # 60 frames in 1 s
    frames = np.concatenate([a, b])
    jaw, close = NAMES.index("jawOpen"), NAMES.index("mouthClose")
    assert frames[15, jaw] > 0.6 and frames[15, close] < 0.05   # open on ɑ
    assert frames[33, close] > 0.5 and frames[33, jaw] < 0.1    # closed on m
    assert frames[-1].max() < 0.01                              # at rest after
    assert np.abs(np.diff(frames, axis=0)).max() < 0.35         # no jumps between frames
    assert faces.frames(1.0)[1].shape == (0, 55)                # nothing twice


# ---- the events on a Voice Live response ----------------------------------------------------------


async def _spoken_turn(session_fields: dict[str, Any], tokens: tuple[str, ...] = (
        "Hello there, nice to meet you. ", "How are you today?")) -> list[dict[str, Any]]:
    _, tr, _, task = await start_session(Dialect.VOICE_LIVE, FakePipeline(tokens=tokens))
    tr.push({"type": "session.update", "session": {"turn_detection": None, **session_fields}})
    await tr.wait_for("session.updated")
    tr.push({"type": "response.create"})
    await tr.wait_for("response.done")
    await stop_session(tr, task, Dialect.VOICE_LIVE)
    return tr.sent


def _audio_timeline(sent: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(index in `sent`, audio seconds sent up to and including that delta)"""
    out, total = [], 0.0
    for i, e in enumerate(sent):
        if e["type"] == "response.audio.delta":
            total += len(base64.b64decode(e["delta"])) / 2 / 24000
            out.append((i, total))
    return out


def _audio_before(sent: list[dict[str, Any]], index: int) -> float:
    """Seconds of audio sent before event `index`, counting the next delta (it carries it)."""
    for i, upto in _audio_timeline(sent):
        if i > index:
            return upto
    return float("inf")


async def test_marks_are_sent_before_their_audio_and_closed_after_it() -> None:
    sent = await _spoken_turn({"output_audio_timestamp_types": ["word"],
                               "animation": {"model_name": "default",
                                             "outputs": ["viseme_id", "blendshapes"]}})
    updated = next(e for e in sent if e["type"] == "session.updated")["session"]
    assert updated["output_audio_timestamp_types"] == ["word"]
    assert updated["animation"] == {"model_name": "default",
                                    "outputs": ["viseme_id", "blendshapes"]}
    audio_s = _audio_timeline(sent)[-1][1]

    words = [(i, e) for i, e in enumerate(sent) if e["type"] == "response.audio_timestamp.delta"]
    transcript = next(e for e in sent if e["type"] == "response.audio_transcript.done")
    # the fake TTS times the words as split (the real one strips their punctuation)
    assert [e["text"] for _, e in words] == transcript["transcript"].split()
    for i, e in words:
        assert e["timestamp_type"] == "word" and e["audio_duration_ms"] > 0
        assert e["audio_offset_ms"] / 1000 < _audio_before(sent, i)  # no later than its sound
        assert (e["audio_offset_ms"] + e["audio_duration_ms"]) / 1000 <= audio_s + 0.001
    offsets = [e["audio_offset_ms"] for _, e in words]
    assert offsets == sorted(offsets)

    shapes = [(i, e) for i, e in enumerate(sent) if e["type"] == "response.animation_viseme.delta"]
    assert all(0 <= e["viseme_id"] <= 21 for _, e in shapes)
    assert {e["viseme_id"] for _, e in shapes} >= {0, 4, 14, 8}  # h-e-l-l-o, then the pause
    times = [e["audio_offset_ms"] for _, e in shapes]
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert all(e["audio_offset_ms"] / 1000 <= _audio_before(sent, i) + 0.0005  # ms rounding
               for i, e in shapes)
    assert shapes[-1][1]["viseme_id"] == 0  # closed as the audio ends

    frames = [e for e in sent if e["type"] == "response.animation_blendshapes.delta"]
    assert [f["frame_index"] for f in frames] == list(np.cumsum([0] + [len(f["frames"])
                                                                     for f in frames])[:-1])
    count = sum(len(f["frames"]) for f in frames)
    assert abs(count - audio_s * FPS) <= 1 and all(len(r) == 55 for f in frames for r in f["frames"])

    kinds = [e["type"] for e in sent]
    audio_done = kinds.index("response.audio.done")
    for done in ("response.audio_timestamp.done", "response.animation_viseme.done",
                 "response.animation_blendshapes.done"):
        assert kinds.count(done) == 1 and audio_done < kinds.index(done) \
            < kinds.index("response.done")
    assert max(i for i, k in enumerate(kinds) if k in MARKS) < audio_done


async def test_no_marks_unless_asked_and_each_stream_alone() -> None:
    plain = await _spoken_turn({})
    assert not {e["type"] for e in plain} & (MARKS | {"response.audio_timestamp.done"})
    only_visemes = {e["type"] for e in await _spoken_turn({"animation": {"outputs": ["viseme_id"]}})}
    assert "response.animation_viseme.delta" in only_visemes
    assert not only_visemes & {"response.audio_timestamp.delta",
                               "response.animation_blendshapes.delta"}
    cleared = await _spoken_turn({"animation": None, "output_audio_timestamp_types": []})
    assert not {e["type"] for e in cleared} & MARKS


@pytest.mark.parametrize(("field", "value", "param", "code"), [
    ("output_audio_timestamp_types", ["sentence"], "session.output_audio_timestamp_types",
     "invalid_value"),
    ("output_audio_timestamp_types", "word", "session.output_audio_timestamp_types",
     "invalid_type"),
    ("animation", {"outputs": ["emotion"]}, "session.animation.outputs[0]", "invalid_value"),
    ("animation", {"output": ["viseme_id"]}, "session.animation.output", "unknown_parameter"),
])
async def test_bad_mark_settings_are_refused_naming_the_field(field: str, value: Any,
                                                              param: str, code: str) -> None:
    _, tr, _, task = await start_session(Dialect.VOICE_LIVE)
    tr.push({"type": "session.update", "session": {field: value, "instructions": "Be brief."}})
    err = await tr.wait_for("error")
    updated = await tr.wait_for("session.updated")
    await stop_session(tr, task, Dialect.VOICE_LIVE)
    assert (err["error"]["param"], err["error"]["code"]) == (param, code)
    assert updated["session"]["instructions"] == "Be brief."  # the rest still applied


async def test_openai_dialects_do_not_know_the_voice_live_marks() -> None:
    _, tr, _, task = await start_session(Dialect.BETA)
    tr.push({"type": "session.update", "session": {"output_audio_timestamp_types": ["word"]}})
    err = await tr.wait_for("error")
    await stop_session(tr, task, Dialect.BETA)
    assert err["error"]["param"] == "session.output_audio_timestamp_types"


async def test_barge_in_stops_the_marks_with_the_audio_and_still_closes_them() -> None:
    pipe = FakePipeline(tokens=[f"Sentence number {i} is here. " for i in range(40)],
                        token_delay=0.01)
    _, tr, _, task = await start_session(Dialect.VOICE_LIVE, pipe)
    tr.push({"type": "session.update", "session": {
        "turn_detection": None, "output_audio_timestamp_types": ["word"],
        "animation": {"outputs": ["viseme_id", "blendshapes"]}}})
    await tr.wait_for("session.updated")
    tr.push({"type": "response.create"})
    await tr.wait_for("response.audio_timestamp.delta", 5)
    tr.push({"type": "response.cancel"})
    done = await tr.wait_for("response.done")
    await stop_session(tr, task, Dialect.VOICE_LIVE)
    sent = tr.sent
    assert done["response"]["status"] == "cancelled"
    kinds = [e["type"] for e in sent]
    for closing in ("response.audio_timestamp.done", "response.animation_viseme.done",
                    "response.animation_blendshapes.done"):
        assert kinds.count(closing) == 1
    audio_s = _audio_timeline(sent)[-1][1]
    words = [e for e in sent if e["type"] == "response.audio_timestamp.delta"]
    assert len(words) < 40 * 5  # stopped early
    # nothing describes audio that was never sent (one delta of 100 ms may lead)
    assert max(e["audio_offset_ms"] for e in words) / 1000 < audio_s
    frames = sum(len(e["frames"]) for e in sent if e["type"] == "response.animation_blendshapes.delta")
    assert frames <= audio_s * FPS + 1
