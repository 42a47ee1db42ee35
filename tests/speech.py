"""Recorded speech for tests (LibriVox clips, public domain; Spanish prompts under data/es) and
word error rate."""

from __future__ import annotations

from pathlib import Path

from voxserve.bench.wer import normalize, wer

__all__ = ["DATA", "clip", "clips", "normalize", "spanish_clips", "wer"]

DATA = Path(__file__).parent / "data"


def clips() -> list[tuple[Path, str]]:
    """(wav path, reference transcript) of every recorded clip."""
    return [(wav, wav.with_suffix(".txt").read_text().strip()) for wav in sorted(DATA.glob("*.wav"))]


def clip(stem_suffix: str) -> tuple[Path, str]:
    for wav, text in clips():
        if wav.stem.endswith(stem_suffix):
            return wav, text
    raise KeyError(stem_suffix)


def spanish_clips() -> list[tuple[Path, str]]:
    """(wav path, reference transcript) of the es-MX prompts under data/es (CC-BY-SA-3.0)."""
    return [(wav, wav.with_suffix(".txt").read_text().strip())
            for wav in sorted((DATA / "es").glob("*.wav"))]
