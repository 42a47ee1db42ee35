"""Documents to passages: text out of txt, md, html and pdf files, cut into retrievable pieces.

A passage is what the model is shown and what a citation names, so it is cut on paragraph
boundaries (a fact is rarely split across two) and kept short: the 0.5B default reads three of
them within a few hundred prompt tokens. Each remembers its document's title and the heading
above it, which go into what is indexed (a question names the topic more often than the text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf"})
MAX_WORDS = 120  # a passage's length: about 160 tokens
MAX_FILE_BYTES = 50 << 20  # larger files are skipped with a warning, not read into memory


class DocumentError(ValueError):
    """A file that cannot be read as a document (the index skips it and says why)."""


@dataclass(frozen=True)
class Block:
    """A paragraph with the heading it sits under."""

    section: str
    text: str


@dataclass(frozen=True)
class Document:
    path: str  # relative to the documents folder, with / separators: the citation's name
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Passage:
    ordinal: int
    section: str
    text: str


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARKUP = re.compile(r"(\*\*|__|\*|`|~~)")
_MD_LIST = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


def _markdown_blocks(text: str) -> tuple[str, list[Block]]:
    title, section = "", ""
    blocks: list[Block] = []
    lines: list[str] = []
    in_code = False

    def close() -> None:
        if lines:
            blocks.append(Block(section, " ".join(lines)))
            lines.clear()
    for raw in text.splitlines():
        if raw.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:  # code is not read aloud, nor asked about in speech
            continue
        heading = _MD_HEADING.match(raw)
        if heading:
            close()
            section = _MD_MARKUP.sub("", heading.group(2))
            title = title or section
        elif not raw.strip():
            close()
        else:
            line = _MD_MARKUP.sub("", _MD_LINK.sub(r"\1", _MD_LIST.sub("", raw))).strip()
            if _MD_LIST.match(raw):
                close()  # a list item is its own paragraph
            if line:
                lines.append(line)
    close()
    return title, blocks


def _text_blocks(text: str) -> tuple[str, list[Block]]:
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    paragraphs = [p for p in paragraphs if p]
    title = paragraphs[0] if paragraphs and len(paragraphs[0].split()) <= 12 else ""
    return title, [Block("", p) for p in paragraphs]


class _HtmlText(HTMLParser):
    """The visible text of a page, a block per paragraph-like element."""

    _BLOCKS = frozenset({"p", "div", "li", "td", "th", "tr", "br", "section", "article",
                         "h1", "h2", "h3", "h4", "h5", "h6", "title", "dd", "dt", "pre",
                         "blockquote", "table", "ul", "ol", "header", "footer", "main"})
    _HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.blocks: list[Block] = []
        self._section = ""
        self._hidden = 0
        self._in_title = False
        self._heading: str | None = None
        self._text: list[str] = []

    def _close(self) -> None:
        text = " ".join("".join(self._text).split())
        self._text.clear()
        if not text:
            return
        if self._heading is not None:
            self._section = text
            self.title = self.title or text
        else:
            self.blocks.append(Block(self._section, text))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self._HIDDEN and tag != "head":
            self._hidden += 1
        if tag in self._BLOCKS:
            self._close()
            if re.fullmatch(r"h[1-6]", tag):
                self._heading = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self._HIDDEN and tag != "head":
            self._hidden = max(0, self._hidden - 1)
        if tag in self._BLOCKS:
            self._close()
            if tag == self._heading:
                self._heading = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = " ".join(data.split()) or self.title
        elif not self._hidden:
            self._text.append(data)


def _html_blocks(text: str) -> tuple[str, list[Block]]:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    parser._close()
    return parser.title, parser.blocks


def _pdf_blocks(path: Path) -> tuple[str, list[Block]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise DocumentError(f"not a readable PDF: {exc}") from exc
    title, blocks = _text_blocks("\n\n".join(pages))
    return str(meta_title).strip() or title, blocks


def read_document(path: Path, root: Path) -> Document:
    """`path` (under `root`) as a document; `DocumentError` when it cannot be read."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DocumentError(f"unsupported file type {suffix or '(none)'}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DocumentError(f"{size} bytes is more than the {MAX_FILE_BYTES} read")
    if suffix == ".pdf":
        title, blocks = _pdf_blocks(path)
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            text = path.read_text(encoding="latin-1")
        if suffix in (".md", ".markdown"):
            title, blocks = _markdown_blocks(text)
        elif suffix in (".html", ".htm"):
            title, blocks = _html_blocks(text)
        else:
            title, blocks = _text_blocks(text)
    if not blocks:
        raise DocumentError("no text in it")
    return Document(path.relative_to(root).as_posix(), title or path.stem.replace("_", " "),
                    tuple(blocks))


def _split_long(text: str, max_words: int) -> list[str]:
    """A paragraph longer than a passage, cut at sentence ends (words, for run-on text)."""
    pieces: list[str] = []
    current: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        words = sentence.split()
        while len(words) > max_words:
            pieces.append(" ".join(words[:max_words]))
            words = words[max_words:]
        if current and len(current) + len(words) > max_words:
            pieces.append(" ".join(current))
            current = []
        current.extend(words)
    if current:
        pieces.append(" ".join(current))
    return pieces


def passages(doc: Document, max_words: int = MAX_WORDS) -> list[Passage]:
    """The document's paragraphs packed into passages of at most `max_words`, never across a
    heading (a section is one topic)."""
    out: list[Passage] = []
    section, words = "", 0
    current: list[str] = []

    def close() -> None:
        nonlocal words
        if current:
            out.append(Passage(len(out), section, " ".join(current)))
            current.clear()
            words = 0
    for block in doc.blocks:
        if block.section != section:
            close()
            section = block.section
        for piece in _split_long(block.text, max_words):
            n = len(piece.split())
            if words and words + n > max_words:
                close()
            current.append(piece)
            words += n
    close()
    return out
