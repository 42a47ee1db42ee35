"""Tools that run inside the server: the interface a response calls them through.

A server tool's call and result are conversation items like a client tool's (`function_call`,
then `function_call_output`), so every client sees what happened; the difference is that the
response runs the tool itself and goes on to answer from its result, without a round trip to
the client. `voxserve.knowledge.tool` is the one built in (VoiceRAG's `search_knowledge`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from voxserve.protocol.session_config import FunctionTool


@dataclass(frozen=True)
class Source:
    """A document an answer drew on: named in the transcript's `sources`, never spoken."""

    path: str
    title: str
    section: str
    text: str  # the passage shown to the model (what a citation is checked against)

    def render(self) -> dict[str, Any]:
        return {"path": self.path, "title": self.title, "section": self.section}


@dataclass(frozen=True)
class ToolResult:
    output: str  # the function_call_output's `output` (JSON text), what the model reads
    sources: tuple[Source, ...] = ()


class ServerTool(Protocol):
    @property
    def spec(self) -> FunctionTool: ...

    @property
    def on_by_default(self) -> bool:
        """Offered to a session that did not say (`session.voxserve.knowledge`)."""

    @property
    def preamble(self) -> str | None:
        """Spoken while the tool and the answer after it run ("Let me check."), or None."""

    async def call(self, arguments: str) -> ToolResult:
        """Run on the model's arguments (JSON text); a bad argument is a result that says so,
        not an exception."""


_WORD = re.compile(r"\w+", re.UNICODE)
# Words every answer and passage share: they cite nothing.
_COMMON = frozenset("""a an and are as at be by can do does for from has have i if in is it its
of on or our the their there they this to was we were what when where which who will with you
your yes no not about than that them then these those into also just only more most some such
very would could should may might been being""".split())


def _content_words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text))
            if w not in _COMMON and (len(w) > 2 or w.isdigit())}


def cited(sources: Sequence[Source], answer: str, asked: str = "") -> list[Source]:
    """The sources an answer used: those sharing the most content words with it (numbers count:
    "30 days"), at least half as many as the best one does; none when the answer shares no word
    with any (it did not answer from them). Words of the question (`asked`) do not count: an
    answer repeats them whatever it found ("the price of the Aero 3 is..."). One entry per
    document, best first."""
    said = _content_words(answer) - _content_words(asked)
    overlaps = [len(said & _content_words(s.text)) for s in sources]
    best = max(overlaps, default=0)
    if best == 0:
        return []
    out: list[Source] = []
    for overlap, source in sorted(zip(overlaps, sources, strict=True), key=lambda x: -x[0]):
        if overlap * 2 >= best and all(s.path != source.path for s in out):
            out.append(source)
    return out
