"""Browser-test fixtures: one control plane and one Chromium for the whole session.

Playwright drives Debian's ``chromium`` (``/usr/bin/chromium``): no browser is downloaded.
The tests run once, on PostgreSQL (the production database)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from control_plane.settings import Settings
from tests.support.openbao import DevOpenBao
from tests.web.console import ConsoleServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Sign-ins the rate-limit test makes from its own (forwarded) address before it is refused.
MAX_FAILURES = 3


@pytest.fixture(scope="session")
def console_server(
    tmp_path_factory: pytest.TempPathFactory, openbao: DevOpenBao
) -> Iterator[ConsoleServer]:
    settings = Settings(
        home=tmp_path_factory.mktemp("web-home"),
        vault_addr=openbao.url,
        web_login_max_failures=MAX_FAILURES,
        web_login_window_seconds=600,
        trusted_proxies="127.0.0.1",  # the tests play a proxy with X-Forwarded-* headers
        alert_allow_private_targets=True,  # alert channels' tests send to loopback receivers
    )
    server = ConsoleServer(settings, openbao)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Playwright's async API, on the suite's own event loop: its sync API would hold a
    running loop in the main thread and break every async test after it."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture
async def context(browser: Browser, console_server: ConsoleServer) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(
        base_url=console_server.url, viewport={"width": 1280, "height": 900}
    )
    ctx.set_default_timeout(10_000)
    yield ctx
    await ctx.close()


@pytest_asyncio.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")
