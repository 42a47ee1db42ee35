"""What rides on a spoken message's audio: word timestamps, visemes and blendshape frames.

They are timed from the TTS engine's own word and phoneme durations, after the silence trim
(models/speech_trim.py), at offsets into the message's audio. Each mark is released just before
the audio delta it falls in, never after: a client can show a word or a mouth shape as its
sound starts, and when a barge-in stops the audio, the marks of the unsent audio are never
sent either. The `.done` events close each stream at the end of the message, cancelled or not.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from voxserve.models.base import Phone, Word
from voxserve.models.blendshapes import Blendshaper
from voxserve.models.visemes import visemes
from voxserve.protocol.server_events import (
    AnimationBlendshapesDeltaEvent, AnimationBlendshapesDoneEvent, AnimationVisemeDeltaEvent,
    AnimationVisemeDoneEvent, AudioTimestampDeltaEvent, AudioTimestampDoneEvent, ServerEvent,
)

WEIGHT_DECIMALS = 3  # blendshape weights on the wire: 0.001 is below what a face shows


@dataclass(frozen=True)
class MarkOptions:
    """Which marks a response sends (Voice Live `output_audio_timestamp_types`, `animation`)."""

    words: bool = False
    visemes: bool = False
    blendshapes: bool = False

    def __bool__(self) -> bool:
        return self.words or self.visemes or self.blendshapes


NO_MARKS = MarkOptions()


class SpeechMarks:
    """The marks of one spoken message, queued by audio time and released by `due`."""

    def __init__(self, options: MarkOptions, ref: dict[str, Any]) -> None:
        self.options = options
        self._ref = ref  # response_id, item_id, output_index, content_index
        self._words: deque[Word] = deque()
        self._visemes: deque[tuple[float, int]] = deque()
        self._faces = Blendshaper() if options.blendshapes else None

    def add(self, offset_s: float, words: Sequence[Word], phones: Sequence[Phone]) -> None:
        """A piece of speech about to be sent, starting `offset_s` into the message's audio."""
        if self.options.words:
            self._words.extend(Word(w.text, w.start_s + offset_s, w.end_s + offset_s)
                               for w in words)
        if self.options.visemes or self._faces is not None:
            timeline = visemes(phones)
            if self.options.visemes:
                last = self._visemes[-1][1] if self._visemes else None
                for v in timeline:
                    if v.viseme_id != last:
                        self._visemes.append((v.offset_s + offset_s, v.viseme_id))
                        last = v.viseme_id
            if self._faces is not None:
                self._faces.add(timeline, offset_s)

    def due(self, until_s: float) -> list[ServerEvent]:
        """The marks that start before `until_s` (the end of the audio about to be sent)."""
        out: list[ServerEvent] = []
        while self._words and self._words[0].start_s < until_s:
            w = self._words.popleft()
            start = round(w.start_s * 1000)
            out.append(AudioTimestampDeltaEvent(
                **self._ref, text=w.text, audio_offset_ms=start,
                audio_duration_ms=max(0, round(w.end_s * 1000) - start)))
        # `<=`: the mouth closing as the audio ends goes with that audio's last delta
        while self._visemes and self._visemes[0][0] <= until_s:
            at, vid = self._visemes.popleft()
            out.append(AnimationVisemeDeltaEvent(**self._ref, audio_offset_ms=round(at * 1000),
                                                 viseme_id=vid))
        if self._faces is not None:
            first, frames = self._faces.frames(until_s)
            if len(frames):
                out.append(AnimationBlendshapesDeltaEvent(
                    **self._ref, frame_index=first,
                    frames=frames.round(WEIGHT_DECIMALS).tolist()))
        return out

    def done(self) -> list[ServerEvent]:
        """The streams' closing events (what was never due is dropped with the unsent audio)."""
        out: list[ServerEvent] = []
        if self.options.words:
            out.append(AudioTimestampDoneEvent(**self._ref))
        if self.options.visemes:
            out.append(AnimationVisemeDoneEvent(**self._ref))
        if self.options.blendshapes:
            out.append(AnimationBlendshapesDoneEvent(
                response_id=self._ref["response_id"], item_id=self._ref["item_id"],
                output_index=self._ref["output_index"]))
        return out
