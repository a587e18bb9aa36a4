"""Browser-test fixtures: one control plane and one Chromium for the whole session.

Playwright drives Debian's ``chromium`` (``/usr/bin/chromium``): no browser is downloaded.
The tests run once, on PostgreSQL (the production database)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

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
    )
    server = ConsoleServer(settings, openbao)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser, console_server: ConsoleServer) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=console_server.url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")
