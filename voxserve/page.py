"""The browser page VoxServe serves at `/` (voxserve/web/): plain files, no build step, nothing
from a CDN. Only the files named here are served, each with its content type."""

from __future__ import annotations

from functools import cache
from pathlib import Path

WEB = Path(__file__).resolve().parent / "web"
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "capture-worklet.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


@cache
def read(name: str) -> tuple[bytes, str] | None:
    """(body, content type) of a page file, or None for any other name."""
    kind = FILES.get(name)
    return None if kind is None else ((WEB / name).read_bytes(), kind)
