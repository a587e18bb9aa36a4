"""Signing in, accessibility checks and screenshots for the browser tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Page

from control_plane.web.sessions import COOKIE

AXE = Path(__file__).parent / "vendor" / "axe.min.js"


async def sign_in(page: Page, key: str) -> None:
    await page.goto("/ui/login")
    await page.fill("input[name=api_key]", key)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/ui/")


async def session_cookie(page: Page) -> dict[str, Any]:
    cookies = [c for c in await page.context.cookies() if c["name"] == COOKIE]
    assert len(cookies) == 1, cookies
    return dict(cookies[0])


async def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    await page.add_script_tag(path=str(AXE))
    results = await page.evaluate("async () => await axe.run(document)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def snap(page: Page, directory: Path, name: str) -> None:
    """The page at desktop width and at a phone's, full length; at the phone's width it
    must fit."""
    await page.screenshot(path=str(directory / f"{name}-1280.png"), full_page=True)
    size = page.viewport_size
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.screenshot(path=str(directory / f"{name}-phone.png"), full_page=True)
    # wide tables scroll inside their own box; the page itself never needs a sideways scroll
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{name}: the page is {width} px wide at a phone's 390 px"
    if size is not None:
        await page.set_viewport_size(size)
