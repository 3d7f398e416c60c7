"""Headless Chromium (Debian's package) driven by Playwright, for screenshots of the real UIs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (Debian package chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shoot(page: Page, url: str, path: Path, *, expect: list[str], timeout_ms: int = 60_000) -> str:
    """Open url, wait until every expected text is visible, save a full-page screenshot; return the text."""
    page.goto(url, wait_until="domcontentloaded", timeout=timeout_ms)
    for text in expect:
        page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout_ms)
    page.wait_for_timeout(500)  # let charts finish drawing
    page.screenshot(path=str(path), full_page=True)
    return page.inner_text("body")


def keep(path: Path, name: str) -> None:
    """Copy a screenshot to .driftloop/screenshots/ so a person can look at the last run's pictures."""
    target = Path(__file__).resolve().parents[2] / ".driftloop" / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, target / name)
