"""The browser page's files (voxserve/page.py): served from the package, nothing from elsewhere."""

from __future__ import annotations

import re

import pytest

from voxserve import page

pytestmark = pytest.mark.unit


def test_every_file_the_page_loads_is_one_the_server_serves() -> None:
    html, kind = page.read("index.html") or (b"", "")
    assert kind.startswith("text/html")
    script, _ = page.read("app.js") or (b"", "")
    loaded = re.findall(r'(?:src|href)="([^"]+)"', html.decode()) + re.findall(
        r'"(/web/[^"]+)"', script.decode())
    assert loaded and all(url.startswith("/web/") for url in loaded), loaded  # no CDN, no host
    assert {url.removeprefix("/web/") for url in loaded} <= set(page.FILES)
    assert 'id="mouth"' in html.decode() and 'data-viseme="0"' in html.decode()


def test_only_the_named_files_are_served() -> None:
    assert page.read("../page.py") is None and page.read("secrets.yaml") is None
    assert all(page.read(name) is not None for name in page.FILES)
