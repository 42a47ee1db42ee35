"""`search_knowledge`: the built-in VoiceRAG tool, run by the server inside a response.

The model calls it with a query; the result it reads is the best passages as JSON, each with its
document's path; the answer is spoken from them and the transcript's `sources` name the
documents the answer used (`cited`), which never reach the audio.
"""

from __future__ import annotations

import asyncio
import json

from voxserve.knowledge.index import KnowledgeIndex, SearchMode
from voxserve.protocol.session_config import FunctionTool
from voxserve.server_tools import Source, ToolResult

TOOL_NAME = "search_knowledge"
MAX_QUERY_CHARS = 500
DEFAULT_DESCRIPTION = "the operator's documents"


def tool_spec(about: str = DEFAULT_DESCRIPTION) -> FunctionTool:
    return FunctionTool(
        type="function", name=TOOL_NAME,
        description=(f"Search {about} for the facts needed to answer the user's question. "
                     "Use it whenever the question is about these topics; answer from what it "
                     "returns."),
        parameters={"type": "object", "properties": {"query": {
            "type": "string", "description": "what to look up, in the user's words"}},
            "required": ["query"]})


class KnowledgeTool:
    """The tool over one index; `spec` is what the model is offered."""

    def __init__(self, index: KnowledgeIndex, about: str = DEFAULT_DESCRIPTION, k: int = 3,
                 mode: SearchMode = "hybrid", on_by_default: bool = True,
                 preamble: str | None = None) -> None:
        self._index = index
        self._preamble = preamble or None
        self._on_by_default = on_by_default
        self._k = k
        self._mode = mode
        self._spec = tool_spec(about)

    @property
    def spec(self) -> FunctionTool:
        return self._spec

    @property
    def on_by_default(self) -> bool:
        return self._on_by_default

    @property
    def preamble(self) -> str | None:
        return self._preamble

    async def call(self, arguments: str) -> ToolResult:
        try:
            args = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            args = None
        query = args.get("query") if isinstance(args, dict) else None
        if not isinstance(query, str) or not query.strip():
            return ToolResult(json.dumps({"error": "query must be a non-empty string"}))
        # SQLite and the embedding engine block: off the event loop, which serves every session
        hits = await asyncio.to_thread(self._index.search, query[:MAX_QUERY_CHARS], self._k,
                                       self._mode)
        sources = tuple(Source(h.path, h.title, h.section, h.text) for h in hits)
        # what the model reads costs prefill time before the answer's first word: the text
        # and the source's name only (the title is in the text's first words, or not needed)
        results = [{"source": s.path, "text": s.text} for s in sources]
        if not results:
            return ToolResult(json.dumps({"results": [], "note": "nothing found"}))
        return ToolResult(json.dumps({"results": results}, ensure_ascii=False), sources)
