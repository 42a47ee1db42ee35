"""The knowledge index: passages in SQLite, ranked by FTS5 BM25 and by embeddings, fused.

One file holds everything (documents, passages, their vectors and the FTS5 table), so an index
built by `voxserve index` is what the server opens, and a restart re-reads only files whose size,
time or content changed. Lexical ranking finds the exact names and numbers a caller says
("order B-772", "the Aero 3"); embeddings find paraphrases and other languages; reciprocal rank
fusion joins the two lists without having to make their scores comparable. Vectors are searched
with one numpy matrix product (~1.5 KB a passage in memory): this Python's sqlite3 cannot load
extensions such as sqlite-vec.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from .documents import SUFFIXES, DocumentError, passages, read_document

log = logging.getLogger("voxserve.knowledge")

SCHEMA_VERSION = "1"
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al.): 1 / (k + rank)
CANDIDATES = 20  # each ranking's list before fusion
EMBED_BATCH = 16
SearchMode = Literal["lexical", "semantic", "hybrid"]


class Embedder(Protocol):
    name: str
    dim: int

    def query(self, text: str) -> np.ndarray: ...

    def passages(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Hit:
    path: str
    title: str
    section: str
    text: str
    score: float  # fused (or BM25-only) score: higher is better


@dataclass(frozen=True)
class IndexStats:
    documents: int
    passages: int
    added: int  # documents (re)indexed by this update
    removed: int
    skipped: tuple[tuple[str, str], ...]  # (path, why) of files that could not be read
    seconds: float


class KnowledgeIndexError(RuntimeError):
    """An index that cannot be used (another embedder's vectors, a newer schema)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY,
    document INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, section TEXT NOT NULL, text TEXT NOT NULL,
    body TEXT NOT NULL, vector BLOB);
CREATE INDEX IF NOT EXISTS passages_document ON passages(document);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5(
    body, content='passages', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS passages_ai AFTER INSERT ON passages BEGIN
    INSERT INTO passages_fts(rowid, body) VALUES (new.id, new.body); END;
CREATE TRIGGER IF NOT EXISTS passages_ad AFTER DELETE ON passages BEGIN
    INSERT INTO passages_fts(passages_fts, rowid, body) VALUES ('delete', old.id, old.body); END;
"""

_TOKEN = re.compile(r"\w+", re.UNICODE)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fts_query(text: str) -> str | None:
    """`text` as an FTS5 query: each word quoted (so nothing the caller says is FTS syntax),
    any of them matching; BM25 weighs rare words up. None when there are no words."""
    words = list(dict.fromkeys(w.lower() for w in _TOKEN.findall(text)))
    return " OR ".join(f'"{w}"' for w in words) if words else None


def fuse(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of lists of ids (best first): ids by Σ 1/(k + rank)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, pid in enumerate(ranking, start=1):
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


class KnowledgeIndex:
    """An index file; `update` brings it in line with a folder, `search` ranks its passages.

    Searches may come from many sessions' threads at once: SQLite reads go through one
    connection under a lock (a search is a few milliseconds), the vectors are an immutable
    array swapped whole after an update."""

    def __init__(self, path: Path | str, embedder: Embedder | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._embedder = embedder
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60.0,
                                   isolation_level=None)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")  # readers go on while `index` writes
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(_SCHEMA)
            self._check_meta()
        # (passage ids, their vectors): one tuple, swapped whole, so a search never pairs the
        # ids of one update with the vectors of another
        self._matrix: tuple[np.ndarray, np.ndarray] = (
            np.empty(0, dtype=np.int64), np.empty((0, embedder.dim if embedder else 0), np.float32))
        self._load_vectors()

    @property
    def hybrid(self) -> bool:
        return self._embedder is not None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _check_meta(self) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        version = meta.get("schema")
        if version is not None and version != SCHEMA_VERSION:
            raise KnowledgeIndexError(f"{self.path} has schema {version}; this VoxServe writes "
                              f"{SCHEMA_VERSION}: delete the file and index again")
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        if self._embedder is None:
            return
        stored = meta.get("embedder")
        if stored is not None and stored != self._embedder.name:
            # vectors of another model are not comparable with this one's: embed again
            log.warning("%s: vectors are from %s, not %s: re-embedding every passage",
                        self.path, stored, self._embedder.name)
            self._db.execute("UPDATE passages SET vector = NULL")
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('embedder', ?)",
                         (self._embedder.name,))

    def _load_vectors(self) -> None:
        if self._embedder is None:
            return
        with self._lock:
            rows = self._db.execute(
                "SELECT id, vector FROM passages WHERE vector IS NOT NULL ORDER BY id").fetchall()
        dim = self._embedder.dim
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = (np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
                   .reshape(len(rows), dim) if rows else np.empty((0, dim), np.float32))
        self._matrix = (ids, vectors)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- building ---------------------------------------------------------------------------

    def update(self, root: Path | str,
               progress: Callable[[str], None] | None = None) -> IndexStats:
        """Index the documents under `root`: new and changed files are read (changed: size or
        time differ and so does the content's sha256), removed ones dropped. Files that cannot
        be read are skipped and named in the result, never fatal."""
        say = progress or (lambda _msg: None)
        started = time.monotonic()
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"knowledge documents folder {root} does not exist")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        with self._lock:
            known = {row[0]: row[1:] for row in self._db.execute(
                "SELECT path, id, size, mtime_ns, sha256 FROM documents")}
        seen: set[str] = set()
        added = 0
        skipped: list[tuple[str, str]] = []
        for n, path in enumerate(files, start=1):
            rel = path.relative_to(root).as_posix()
            seen.add(rel)
            st = path.stat()
            old = known.get(rel)
            if old is not None and (old[1], old[2]) == (st.st_size, st.st_mtime_ns):
                continue
            digest = _sha256(path)
            if old is not None and old[3] == digest:
                with self._transaction() as db:  # touched, not changed
                    db.execute("UPDATE documents SET size = ?, mtime_ns = ? WHERE id = ?",
                               (st.st_size, st.st_mtime_ns, old[0]))
                continue
            try:
                doc = read_document(path, root)
            except (DocumentError, OSError) as exc:
                skipped.append((rel, str(exc)))
                say(f"[index] skipped {rel}: {exc}")
                continue
            pieces = passages(doc)
            vectors = self._embed([f"{doc.title}. {p.section}. {p.text}" for p in pieces], rel, say)
            with self._transaction() as db:
                db.execute("DELETE FROM documents WHERE path = ?", (rel,))
                doc_id = db.execute(
                    "INSERT INTO documents (path, title, size, mtime_ns, sha256) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (rel, doc.title, st.st_size, st.st_mtime_ns, digest)).lastrowid
                db.executemany(
                    "INSERT INTO passages (document, ordinal, section, text, body, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(doc_id, p.ordinal, p.section, p.text, f"{doc.title}\n{p.section}\n{p.text}",
                      vectors[i].tobytes() if vectors is not None else None)
                     for i, p in enumerate(pieces)])
            added += 1
            say(f"[index] {n}/{len(files)} {rel}: {len(pieces)} passages")
        gone = [rel for rel in known if rel not in seen]
        if gone:
            with self._transaction() as db:
                db.executemany("DELETE FROM documents WHERE path = ?", [(g,) for g in gone])
            for rel in gone:
                say(f"[index] removed {rel}")
        self._embed_missing(say)
        self._load_vectors()
        with self._lock:
            n_docs = self._db.execute("SELECT count(*) FROM documents").fetchone()[0]
            n_passages = self._db.execute("SELECT count(*) FROM passages").fetchone()[0]
        return IndexStats(n_docs, n_passages, added, len(gone), tuple(skipped),
                          time.monotonic() - started)

    def _embed(self, texts: list[str], rel: str,
               say: Callable[[str], None]) -> np.ndarray | None:
        if self._embedder is None:
            return None
        out = []
        for start in range(0, len(texts), EMBED_BATCH):
            out.append(self._embedder.passages(texts[start:start + EMBED_BATCH]))
            if len(texts) > EMBED_BATCH:
                say(f"[index] {rel}: embedded {min(start + EMBED_BATCH, len(texts))}/{len(texts)}")
        return np.concatenate(out) if out else None

    def _embed_missing(self, say: Callable[[str], None]) -> None:
        """Vectors for passages indexed without them (lexical first, or another embedder)."""
        if self._embedder is None:
            return
        with self._lock:
            rows = self._db.execute("SELECT p.id, d.title, p.section, p.text FROM passages p "
                                    "JOIN documents d ON d.id = p.document "
                                    "WHERE p.vector IS NULL").fetchall()
        for start in range(0, len(rows), EMBED_BATCH):
            batch = rows[start:start + EMBED_BATCH]
            vectors = self._embedder.passages([f"{t}. {s}. {x}" for _, t, s, x in batch])
            with self._transaction() as db:
                db.executemany("UPDATE passages SET vector = ? WHERE id = ?",
                               [(v.tobytes(), r[0]) for v, r in zip(vectors, batch, strict=True)])
            say(f"[index] embedded {min(start + EMBED_BATCH, len(rows))}/{len(rows)} passages")

    # ---- searching --------------------------------------------------------------------------

    def _lexical(self, query: str, limit: int) -> list[int]:
        match = fts_query(query)
        if match is None:
            return []
        with self._lock:
            return [r[0] for r in self._db.execute(
                "SELECT rowid FROM passages_fts WHERE passages_fts MATCH ? "
                "ORDER BY bm25(passages_fts) LIMIT ?", (match, limit))]

    def _semantic(self, query: str, limit: int) -> list[int]:
        ids, vectors = self._matrix  # one consistent pair, even mid-update
        if self._embedder is None or not ids.size:
            return []
        scores = vectors @ self._embedder.query(query)
        top = np.argsort(-scores)[:limit]
        return [int(ids[i]) for i in top]

    def paths(self, ids: Sequence[int]) -> list[str]:
        """The document path of each passage id (the benchmark's ranks)."""
        with self._lock:
            by_id = dict(self._db.execute(
                "SELECT p.id, d.path FROM passages p JOIN documents d ON d.id = p.document"))
        return [by_id[i] for i in ids if i in by_id]

    def ranking(self, query: str, mode: SearchMode = "hybrid") -> list[tuple[int, float]]:
        """(passage id, score), best first, for `query`: BM25 alone (`lexical`), embeddings
        alone (`semantic`), or both fused by reciprocal rank (`hybrid`); without an embedder,
        BM25."""
        rankings = []
        if mode != "semantic" or self._embedder is None:
            rankings.append(self._lexical(query, CANDIDATES))
        if mode != "lexical" and self._embedder is not None:
            rankings.append(self._semantic(query, CANDIDATES))
        return fuse(rankings)

    def search(self, query: str, k: int = 3, mode: SearchMode = "hybrid") -> list[Hit]:
        """The `k` best passages for `query` (`ranking`), with their documents."""
        best = self.ranking(query, mode)[:k]
        if not best:
            return []
        with self._lock:
            rows: dict[int, tuple[str, str, str, str]] = {r[0]: r[1:] for r in self._db.execute(
                "SELECT p.id, d.path, d.title, p.section, p.text FROM passages p JOIN documents d "
                f"ON d.id = p.document WHERE p.id IN ({','.join('?' * len(best))})",
                [pid for pid, _ in best])}
        return [Hit(*rows[pid], score) for pid, score in best if pid in rows]
