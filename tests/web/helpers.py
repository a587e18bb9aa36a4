"""Signing in, accessibility checks and screenshots for the browser tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from control_plane.web.sessions import COOKIE

AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def sign_in(page: Page, key: str) -> None:
    page.goto("/ui/login")
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/")


def session_cookie(page: Page) -> dict[str, Any]:
    cookies = [c for c in page.context.cookies() if c["name"] == COOKIE]
    assert len(cookies) == 1, cookies
    return dict(cookies[0])


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("async () => await axe.run(document)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def snap(page: Page, directory: Path, name: str) -> None:
    """The page at desktop width and at a phone's, full length."""
    page.screenshot(path=str(directory / f"{name}-1280.png"), full_page=True)
    size = page.viewport_size
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(directory / f"{name}-phone.png"), full_page=True)
    if size is not None:
        page.set_viewport_size(size)
