"""A control plane served in this process for the browser tests: uvicorn on a free loopback
port, on its own event loop in a thread, on a fresh PostgreSQL database. Test code runs
MailFleet's services on that same loop (``run``), so they share the app's Database."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import uvicorn
from google.protobuf.timestamp_pb2 import Timestamp

from agent.daemon import sample_to_proto
from agent.metrics import Sampler
from control_plane.api.app import create_app
from control_plane.api_keys.service import issue_key, revoke_key
from control_plane.db import migrate
from control_plane.db.engine import Database
from control_plane.gateway.server import Gateway
from control_plane.gateway.translate import sample_rows
from control_plane.metrics.ingest import store_samples
from control_plane.metrics.partitions import make_ahead
from control_plane.servers.schemas import ServerCreate
from control_plane.servers.service import create_server
from control_plane.settings import Settings
from control_plane.tenants.models import Tenant
from control_plane.vault.client import Vault
from mailfleet.agent.v1 import agent_pb2
from tests.support.openbao import DevOpenBao
from tests.support.ports import free_port
from tests.support.postgres import create_database, drop_database

T = TypeVar("T")


class ConsoleServer:
    def __init__(self, settings: Settings, openbao: DevOpenBao) -> None:
        self.settings, self.openbao = settings, openbao
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._gateway: Gateway | None = None

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.db_url = self.run(create_database("mailfleet_web"))
        self.db = Database(self.db_url)
        self.run(migrate.upgrade(self.db), timeout=120)
        vault = Vault(self.openbao.url, token=self.openbao.token, kv_mount="mailfleet")
        app = create_app(self.settings, database=self.db, vault=vault)
        self.app = app
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.uvicorn = uvicorn.Server(config)
        self.serving = asyncio.run_coroutine_threadsafe(self.uvicorn.serve(), self.loop)
        deadline = time.monotonic() + 20
        while not self.uvicorn.started:
            assert not self.serving.done(), self.serving.exception()
            assert time.monotonic() < deadline, "the console did not start in 20 s"
            time.sleep(0.02)

    def stop(self) -> None:
        """Everything ``start`` got to, in reverse: safe after a start that failed midway."""
        try:
            if self._gateway is not None:
                self.run(self._gateway.stop())
            if hasattr(self, "serving"):
                self.uvicorn.should_exit = True
                self.serving.result(20)
            if hasattr(self, "db"):
                self.run(self.db.dispose())
            if hasattr(self, "db_url"):
                self.run(drop_database(self.db_url))
        finally:
            if self.thread.is_alive():
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(10)
            self.loop.close()

    def gateway(self) -> Gateway:
        """The agent gateway ``mailfleet serve`` runs, on the app's hub and PKI, listening on
        free loopback ports; started on first use (only tests with real agents pay for it),
        stopped with the server."""
        if self._gateway is None:
            link, enroll = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            settings = self.settings.model_copy(update={"grpc_addr": link, "enroll_addr": enroll})
            state = self.app.state

            async def start() -> Gateway:
                await state.pki.ensure(agent_max_ttl_seconds=86_400, gateway_ttl_seconds=86_400)
                gateway = Gateway(settings, self.db, state.pki, state.hub)
                await gateway.start()
                return gateway

            self._gateway = self.run(start())
        return self._gateway

    # What the tests set up, through MailFleet's own services.

    def admin_key(self) -> str:
        async def issue() -> str:
            async with self.db.session() as session:
                return (await issue_key(session, scope="admin", tenant_id=None, name="web")).key

        return self.run(issue())

    def tenant(self, name: str) -> tuple[uuid.UUID, str, uuid.UUID]:
        """(tenant id, its key, the key's id)."""

        async def make() -> tuple[uuid.UUID, str, uuid.UUID]:
            async with self.db.session() as session:
                tenant = Tenant(name=f"{name}-{uuid.uuid4().hex[:6]}")
                session.add(tenant)
                await session.flush()
                issued = await issue_key(session, scope="tenant", tenant_id=tenant.id, name=name)
                return tenant.id, issued.key, issued.record.id

        return self.run(make())

    def server(self, tenant_id: uuid.UUID, name: str) -> uuid.UUID:
        return self.servers(tenant_id, [name])[0]

    def servers(self, tenant_id: uuid.UUID, names: list[str]) -> list[uuid.UUID]:
        async def make() -> list[uuid.UUID]:
            async with self.db.tenant_session(tenant_id) as session:
                made = []
                for name in names:
                    data = ServerCreate(name=name, provider="manual", mail_stack="none")
                    made.append((await create_server(session, tenant_id, data)).id)
                return made

        return self.run(make())

    def revoke(self, key_id: uuid.UUID) -> None:
        async def revoke() -> None:
            async with self.db.session() as session:
                await revoke_key(session, key_id)

        self.run(revoke())

    def agent_samples(self, tenant_id: uuid.UUID, server_id: uuid.UUID, count: int) -> int:
        """``count`` samples one every 5 minutes up to now, each one this machine's real
        agent sample (its CPU varied so the line moves), through the gateway's translation
        and the metrics store, as a streaming agent's batches arrive."""
        sample = sample_to_proto(Sampler().sample())
        now = datetime.now(UTC).replace(microsecond=0)
        samples = []
        for i in range(count):
            copy = agent_pb2.MetricSample()
            copy.CopyFrom(sample)
            stamp = Timestamp()
            stamp.FromDatetime(now - timedelta(minutes=5 * (count - 1 - i)))
            copy.sampled_at.CopyFrom(stamp)
            copy.cpu_percent = float(10 + (i * 37) % 80)
            samples.append(copy)
        batch = agent_pb2.MetricBatch(sequence=1, samples=samples)

        async def store() -> int:
            async with self.db.session() as session:
                await make_ahead(session, (now - timedelta(days=1)).date(), now.date())
            async with self.db.session() as session:
                return await store_samples(session, sample_rows(tenant_id, server_id, batch))

        return self.run(store())
