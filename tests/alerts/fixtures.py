"""Fixtures (a pytest plugin, loaded by tests/conftest.py) for tests that send alerts: an
app whose channels may reach loopback receivers, an SMTP sink as its relay, a PagerDuty
stand-in, and ``alerting``, which bundles what a delivery test takes. The alerts tests and
the incidents' end-to-end notification test share them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import httpx
import pytest
import pytest_asyncio

from control_plane.settings import Settings
from tests.alerts.receivers import HttpReceiver, SmtpSink

# The app and the alert services come with the fixtures that use them: every pytest process
# loads this plugin, the xdist controller too, which runs no test.
if TYPE_CHECKING:
    from fastapi import FastAPI

    from control_plane.db.engine import Database
    from control_plane.vault.client import Vault
    from tests.alerts.helpers import Alerting


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink().running() as sink:
        yield sink


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver().running() as running:
        yield running


@pytest_asyncio.fixture
async def pagerduty() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver(default=202).running() as running:
        yield running


@pytest.fixture
def alert_settings(settings: Settings, smtp_sink: SmtpSink, pagerduty: HttpReceiver) -> Settings:
    return settings.model_copy(
        update={
            "alert_allow_private_targets": True,
            "alert_retry_base_seconds": 1.0,
            "alert_max_attempts": 2,
            "alert_send_timeout_seconds": 2.0,
            "smtp_relay_host": "127.0.0.1",
            "smtp_relay_port": smtp_sink.port,
            "smtp_relay_security": "none",
            "smtp_relay_from": "alerts@mailfleet.test",
            "pagerduty_events_url": f"{pagerduty.url}/v2/enqueue",
        }
    )


@pytest.fixture
def alert_app(alert_settings: Settings, db: Database, vault: Vault) -> FastAPI:
    from control_plane.api.app import create_app

    return create_app(alert_settings, database=db, vault=vault)


@pytest_asyncio.fixture
async def alert_client(alert_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=alert_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailfleet.test") as http:
        yield http


@pytest.fixture
def alerting(
    alert_client: httpx.AsyncClient,
    db: Database,
    vault: Vault,
    alert_settings: Settings,
    receiver: HttpReceiver,
) -> Alerting:
    from tests.alerts.helpers import Alerting

    return Alerting(alert_client, db, vault, alert_settings, receiver)
