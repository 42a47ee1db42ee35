"""Blendshape frames (55 weights at 60 fps) from a viseme timeline.

Azure's facial-position output is the 52 ARKit blendshapes in ARKit's order followed by head
roll and the two eye rolls. Here each viseme has a mouth pose over the jaw, lip and tongue
shapes (the rest stay at rest), and the face moves towards the pose of the viseme about to
sound with a first-order lag: real lips start moving before the sound and never jump, so the
target is looked up slightly ahead and approached with a ~30 ms time constant.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

import numpy as np

from .visemes import MAX_VISEME, Viseme

FPS = 60
NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft",
    "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut", "headRoll", "leftEyeRoll", "rightEyeRoll",
)
LOOKAHEAD_S = 0.03
TIME_CONSTANT_S = 0.03

# Mouth poses per viseme; a name without Left/Right sets both sides.
_POSES: dict[int, dict[str, float]] = {
    0: {},
    1: {"jawOpen": 0.45, "mouthLowerDown": 0.2, "mouthStretch": 0.1},            # æ ə ʌ
    2: {"jawOpen": 0.65, "mouthLowerDown": 0.3},                                 # ɑ
    3: {"jawOpen": 0.5, "mouthFunnel": 0.35, "mouthPucker": 0.1},                # ɔ
    4: {"jawOpen": 0.35, "mouthStretch": 0.25, "mouthSmile": 0.1},               # ɛ ʊ
    5: {"jawOpen": 0.25, "mouthFunnel": 0.35, "mouthPucker": 0.2},               # ɝ
    6: {"jawOpen": 0.15, "mouthSmile": 0.35, "mouthStretch": 0.35},              # i ɪ j
    7: {"jawOpen": 0.1, "mouthPucker": 0.75, "mouthFunnel": 0.3},                # u w
    8: {"jawOpen": 0.35, "mouthFunnel": 0.55, "mouthPucker": 0.35},              # o
    9: {"jawOpen": 0.6, "mouthFunnel": 0.2},                                     # aʊ
    10: {"jawOpen": 0.45, "mouthFunnel": 0.3},                                   # ɔɪ
    11: {"jawOpen": 0.6, "mouthStretch": 0.2},                                   # aɪ
    12: {"jawOpen": 0.3},                                                        # h
    13: {"jawOpen": 0.2, "mouthFunnel": 0.3, "mouthPucker": 0.25},               # ɹ
    14: {"jawOpen": 0.25, "tongueOut": 0.1},                                     # l
    15: {"jawOpen": 0.08, "mouthStretch": 0.3, "mouthSmile": 0.15},              # s z
    16: {"jawOpen": 0.1, "mouthFunnel": 0.45, "mouthPucker": 0.2},               # ʃ ʒ
    17: {"jawOpen": 0.15, "tongueOut": 0.35},                                    # ð
    18: {"jawOpen": 0.08, "mouthRollLower": 0.55, "mouthUpperUp": 0.2},          # f v
    19: {"jawOpen": 0.15, "mouthStretch": 0.1},                                  # t d n θ
    20: {"jawOpen": 0.25},                                                       # k g ŋ
    21: {"mouthClose": 0.6, "mouthPress": 0.4},                                  # p b m
}


def _pose_matrix() -> np.ndarray:
    index = {name: i for i, name in enumerate(NAMES)}
    poses = np.zeros((MAX_VISEME + 1, len(NAMES)), np.float32)
    for vid, pose in _POSES.items():
        for name, weight in pose.items():
            for full in (name,) if name in index else (name + "Left", name + "Right"):
                poses[vid, index[full]] = weight
    return poses


POSES = _pose_matrix()


class Blendshaper:
    """Frames for one spoken message, made as its audio goes out.

    Visemes are added as each piece of speech is synthesized (offsets from the message's
    start); `frames(until_s)` returns the frames up to that point of the audio, continuing the
    smoothing where the last call stopped, so the frames of a message are one animation.
    """

    def __init__(self) -> None:
        self._times: list[float] = []
        self._ids: list[int] = []
        self._state = np.zeros(len(NAMES), np.float32)
        self._alpha = np.float32(1.0 - math.exp(-1.0 / FPS / TIME_CONSTANT_S))
        self.next_frame = 0

    def add(self, visemes: Iterable[Viseme], offset_s: float = 0.0) -> None:
        for v in visemes:
            t = v.offset_s + offset_s
            if self._times and t <= self._times[-1]:
                self._times[-1], self._ids[-1] = t, v.viseme_id
            else:
                self._times.append(t)
                self._ids.append(v.viseme_id)

    def _target(self, t: float) -> np.ndarray:
        k = bisect.bisect_right(self._times, t) - 1
        return POSES[self._ids[k] if k >= 0 else 0]

    def frames(self, until_s: float) -> tuple[int, np.ndarray]:
        """(index of the first frame, frames [n, 55]) for the frames before `until_s`."""
        first = self.next_frame
        last = max(first, math.ceil(until_s * FPS))
        out = np.empty((last - first, len(NAMES)), np.float32)
        for row, frame in enumerate(range(first, last)):
            target = self._target(frame / FPS + LOOKAHEAD_S)
            self._state += (target - self._state) * self._alpha
            out[row] = self._state
        self.next_frame = last
        return first, out
