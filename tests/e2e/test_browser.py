"""The page at `/` in a real browser: Debian's Chromium, headless, driven by Playwright, with a
fake microphone playing a recording. The page shows the user's words and the agent's answer,
plays the answer's audio, and the mouth follows the visemes while it plays. A screenshot is kept
in test-artifacts/ (the README's picture is one)."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import Server
from tests.speech import clip, wer
from voxserve.audio.resample import resample
from voxserve.client import read_wav

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = 240_000
# The flags the machine needs (no sandbox as root, no background traffic to a closed network),
# then a fake microphone that plays FILE and no permission prompt.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         "--autoplay-policy=no-user-gesture-required"]


def _browser_or_skip() -> None:
    import importlib.util

    missing = [what for what, ok in (("Debian chromium", os.path.exists(CHROMIUM)),
                                     ("playwright", importlib.util.find_spec("playwright")))
               if not ok]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test needs {', '.join(missing)} (scripts/test installs them)")
        pytest.skip(f"{', '.join(missing)} not installed (scripts/test installs them)")


def _microphone(path: Path) -> tuple[Path, str]:
    """A recording with silence around it, as Chromium's fake microphone plays it (48 kHz, on a
    loop: the silence after is long enough for the whole answer before the clip comes again)."""
    wav, reference = clip("0930")
    audio = read_wav(wav)
    audio = np.concatenate([np.zeros(24_000, np.float32), audio, np.zeros(24_000 * 40, np.float32)])
    pcm = (np.clip(resample(audio, 24_000, 48_000), -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48_000)
        w.writeframes(pcm.tobytes())
    return path, reference


def test_the_page_hears_the_user_answers_aloud_and_moves_its_mouth(server: Server,
                                                                    tmp_path: Path) -> None:
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    mic, reference = _microphone(tmp_path / "microphone.wav")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            *FLAGS, f"--use-file-for-fake-audio-capture={mic}"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 640})
            page.goto(f"{server.http}/", timeout=TIMEOUT_MS)
            page.wait_for_function("document.querySelectorAll('#voice option').length > 0")
            assert page.locator("#mouth").get_attribute("data-viseme") == "0"
            page.fill("#key", server.api_key)  # the e2e server requires a key, as off loopback
            page.click("#start")
            page.wait_for_selector("#status[data-state='live']", timeout=TIMEOUT_MS)
            page.wait_for_function("(document.querySelector('#transcript .user') || {})"
                                   ".textContent?.trim().split(' ').length >= 4",
                                   timeout=TIMEOUT_MS)
            # the mouth moves while the answer plays: several viseme states, not only closed
            page.wait_for_function("window.voxserve.audioSeconds > 1 && "
                                   "new Set(window.voxserve.visemes).size >= 4",
                                   timeout=TIMEOUT_MS)
            page.wait_for_function("(document.querySelector('#transcript .agent') || {})"
                                   ".textContent?.trim().length > 0", timeout=TIMEOUT_MS)
            page.screenshot(path=str(ARTIFACTS / "browser-page.png"))
            heard = page.locator("#transcript .user").first.text_content() or ""
            said = page.locator("#transcript .agent").first.text_content() or ""
            seen = set(page.evaluate("window.voxserve.visemes"))
            latency = page.locator("#latency").text_content() or ""
            errors = page.locator("#transcript .error").all_text_contents()
        finally:
            browser.close()
    assert wer(reference, heard) <= 0.35, heard
    assert said.strip(), "no answer shown"
    assert seen - {0} and seen <= set(range(22)), seen
    assert "First audio" in latency and "ms" in latency, latency
    assert not errors, errors
