"""The offline turn-taking replay drives the session's own listener: scripted signals, tones."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.fakes import EnergyVad
from voxserve.bench import turn_taking as tt

pytestmark = pytest.mark.unit


class _Signals:
    """The audio model is unsure everywhere; the words (1.2 s after each pause) read unfinished
    at the inserted pause and complete at the end."""

    def at(self, turn: tt.LabelledTurn, start: int, pause: int):  # type: ignore[no-untyped-def]
        final = pause / tt.RATE >= turn.last_word_end
        return 0.3, 0.09, final, 1.2, "a table for two." if final else "a table for"


def _paused_turn() -> tt.LabelledTurn:
    tone = (0.3 * np.sin(np.arange(tt.RATE) * 0.1)).astype(np.float32)

    def silence(s: float) -> np.ndarray:
        return np.zeros(int(s * tt.RATE), np.float32)
    audio = np.concatenate([silence(0.5), tone, silence(0.7), tone, silence(3.0)])
    return tt.LabelledTurn("t", "paused", audio, last_word_end=3.2, hold_from=1.5, hold_to=2.2)


async def test_replay_judges_pauses_as_the_session_does() -> None:
    turn = _paused_turn()
    plain = await tt.replay(turn, "vad", tt.MODES["server_vad 500 ms"], _Signals(), EnergyVad())
    assert plain.premature and len(plain.ends) == 2  # 700 ms of silence ended it mid-sentence
    medium = await tt.replay(turn, "medium", tt.MODES["semantic_vad medium"], _Signals(),
                             EnergyVad())
    assert not medium.premature and not medium.missed and len(medium.ends) == 1
    # unsure audio waits for the words: they land 1.2 s after the 200 ms pause mark and, being
    # complete, end the turn at once (the 500 ms "mid" wait has passed by then)
    assert medium.latency_ms == pytest.approx(200 + 1200, abs=80)
    high = await tt.replay(turn, "high", tt.MODES["semantic_vad high"], _Signals(), EnergyVad())
    assert high.latency_ms == pytest.approx(800, abs=80)  # its timeout comes before the words
