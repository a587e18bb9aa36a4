"""``mailfleet serve``: migrate, open Vault, run the API until a signal stops it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI

from control_plane.alerts import delivery as alert_delivery
from control_plane.api.app import create_app
from control_plane.api_keys.service import issue_key, live_admin_key
from control_plane.backups import recovery, schedule, workspace
from control_plane.capacity.jobs import ForecastJob
from control_plane.commands import handlers
from control_plane.costs.budget_checks import BudgetJob
from control_plane.costs.catalog import PriceRefreshJob
from control_plane.costs.jobs import MeteringJob
from control_plane.db import migrate
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.db.single_replica import only_replica
from control_plane.dns import service as dns_service
from control_plane.dnsbl import delisting as dnsbl_delisting
from control_plane.dnsbl import service as dnsbl
from control_plane.dnsbl.sweep import Sweep as DnsblSweep
from control_plane.gateway.hub import AgentHub
from control_plane.gateway.server import Gateway
from control_plane.health import outbound  # noqa: F401  (registers smtp.probe_out's handler)
from control_plane.health import service as health
from control_plane.health.observer import SmtpObserver
from control_plane.health.sweep import Sweep
from control_plane.incidents import escalation
from control_plane.incidents import service as incidents
from control_plane.ips import jobs as ip_jobs
from control_plane.ips import provider_ips as ip_inventory
from control_plane.ipswitch import workflow as ip_switch
from control_plane.ipswitch.runner import IpSwitchRunner
from control_plane.listeners import bind, ensure_free
from control_plane.mail import dkim
from control_plane.mailstats import results as mail_stats
from control_plane.mailstats import schedule as mail_stats_schedule
from control_plane.metrics.retention import MaintenanceJob
from control_plane.metrics.retention import maintain as metrics_maintain
from control_plane.periodic import Job, PeriodicJobs
from control_plane.provisioning.agent_package import AgentPackage
from control_plane.provisioning.registry import ProviderRegistry
from control_plane.provisioning.runner import ProvisioningRunner
from control_plane.provisioning.workflow import Workflow
from control_plane.resize import workflow as resizing
from control_plane.resize.runner import ResizeRunner
from control_plane.servers.service import count_machines
from control_plane.settings import Settings, SettingsError, parse_host_port, record_serve
from control_plane.tls import service as tls
from control_plane.vault.client import Vault
from control_plane.vault.connect import open_vault
from control_plane.vault.pki import AgentPki

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` owns shutdown for every part.

    (uvicorn re-raises a caught SIGTERM after its shutdown, which would kill the process
    before the local OpenBao and the database pool are closed.)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _stop_on_signals(server: uvicorn.Server) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> bool:
    while not server.started:
        if task.done():
            return False
        await asyncio.sleep(0.05)
    return True


async def _admin_key_line(db: Database) -> str:
    """A new admin key only when none works: restarts must not pile up live admin keys."""
    async with db.session() as session:
        live = await live_admin_key(session)
        if live is None:
            issued = await issue_key(
                session, scope="admin", tenant_id=None, name="bootstrap (serve)"
            )
            return f"Admin API key (shown once): {issued.key}"
    return (
        f"Admin API key: one exists ({live.hint}, shown when it was made); "
        "make another with 'mailfleet api-key create --admin'"
    )


async def _local_vpss(db: Database) -> int:
    async with db.session() as session:
        return await count_machines(session, "local")


def _vpss(count: int) -> str:
    return f"{count} local VPS" + ("" if count == 1 else "s")


def freeze_startup_heap() -> None:
    """Take what start-up made (modules, the app, table metadata: ~250k objects) out of the
    garbage collector's sight. Otherwise every full collection walks it again, stalling a
    request by 150-190 ms every ~20 (benchmarks/console.py saw its p95 there)."""
    gc.collect()
    gc.freeze()


async def _serve_api(
    settings: Settings,
    app: FastAPI,
    db: Database,
    api_sockets: list[socket.socket],
    bootstrap_admin_key: bool,
) -> int:
    host, port = parse_host_port(settings.api_addr)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level,
        log_config=None,
        # A request that never ends (a followed stream, a stuck client) must not hold the
        # stop: the periodic jobs, gateway and local OpenBao shut down after it.
        timeout_graceful_shutdown=settings.api_shutdown_seconds,
        timeout_keep_alive=settings.api_keep_alive_seconds,
    )
    server = _Server(config)
    _stop_on_signals(server)
    task = asyncio.create_task(server.serve(sockets=api_sockets))
    if await _wait_started(server, task):
        freeze_startup_heap()
        url_host = f"[{host}]" if ":" in host else host
        lines = [
            f"MailFleet API: http://{url_host}:{port}  (docs at /docs)",
            f"Agent gateway: {settings.grpc_addr} (mutual TLS), enrollment: {settings.enroll_addr}",
        ]
        if bootstrap_admin_key:
            lines.append(await _admin_key_line(db))
        # Last and set apart, so the URL and the key are not lost among start-up output.
        print("\n" + "\n".join(lines) + "\n", flush=True)
    await task
    if server.started and (count := await _local_vpss(db)):
        print(
            f"{_vpss(count)} keep{'s' if count == 1 else ''} running (agents reconnect when "
            "serve starts again; delete them with 'mailfleet server delete --all-local')",
            flush=True,
        )
    return 0 if server.started else 1


def _provider_api_sockets(settings: Settings, hosts: list[str]) -> list[socket.socket]:
    """The API also on a provider's host addresses (the local provider's bridge), on the
    API's port: the only way its VPSs reach the agent package (GET /agent/install.sh)."""
    host, port = parse_host_port(settings.api_addr)
    with contextlib.suppress(ValueError):  # a name, not an address: listen beside it
        if not host or ipaddress.ip_address(host).is_unspecified:  # already listening there
            return []
    return [bind(f"{extra}:{port}", "MAILFLEET_API_ADDR") for extra in hosts if extra != host]


def periodic_jobs(
    db: Database, vault: Vault, settings: Settings, providers: ProviderRegistry
) -> list[Job]:
    return [
        Job("dkim-rotation", lambda session: dkim.advance_rotations(session, vault)),
        Job("backup-results", schedule.absorb_finished),
        Job("backup-workspace-policies", workspace.adopt_job(vault)),
        Job("backup-schedule", schedule.queue_due),
        Job("recoveries", recovery.advance_job(vault, settings)),
        Job("tls-renewal", tls.renew_job(db, vault, settings)),
        Job("dmarc-progression", dns_service.dmarc_progression_job(vault)),
        Job("incident-escalation", escalation.job(settings), escalation.next_due_job(settings)),
        Job("incident-orphans", incidents.resolve_orphans),
        Job(
            "alert-delivery",
            alert_delivery.delivery_job(db, vault, settings),
            alert_delivery.next_due,
        ),
        Job("ip-inventory", ip_inventory.adopt_unlisted),
        Job("ip-warmup", ip_jobs.warmup_job),
        Job(
            "dnsbl-delisting",
            dnsbl_delisting.recheck_job(settings),
            dnsbl_delisting.next_recheck,
        ),
        Job("dnsbl-history", dnsbl.cleanup_job(settings)),
        Job("mail-stats", mail_stats_schedule.job(settings)),
        Job("forecast-checks", ForecastJob(settings)),
        Job("budget-checks", BudgetJob(settings)),
        Job("metrics-maintenance", MaintenanceJob(settings, ran=True)),
        Job("price-refresh", PriceRefreshJob(settings, providers)),  # first round: at start
        Job("cost-metering", MeteringJob(settings)),
    ]


async def serve(settings: Settings, *, bootstrap_admin_key: bool = False) -> int:
    """Check every listen address first (one line naming the taken one and its setting),
    record the settings for the CLI, then start everything. On SQLite it must be the only
    replica: a second ``serve`` on the same file is refused in one line."""
    with only_replica(settings):
        api_socket = bind(settings.api_addr, "MAILFLEET_API_ADDR")
        try:
            ensure_free(settings.grpc_addr, "MAILFLEET_GRPC_ADDR")
            ensure_free(settings.enroll_addr, "MAILFLEET_ENROLL_ADDR")
            if settings.smtp_observer_addr is not None:
                ensure_free(settings.smtp_observer_addr, "MAILFLEET_SMTP_OBSERVER_ADDR")
            record_serve(settings, os.getpid())
            return await _serve(settings, api_socket, bootstrap_admin_key)
        finally:
            api_socket.close()


async def _serve(settings: Settings, api_socket: socket.socket, bootstrap_admin_key: bool) -> int:
    db = Database.from_settings(settings)
    try:
        async with open_vault(settings) as vault:
            await migrate.upgrade(db)
            # Partitions for today and ahead before agents connect; then the periodic job.
            await db.transact(lambda session: metrics_maintain(session, settings, utcnow()))
            pki = AgentPki(vault, settings.vault_pki_mount)
            await pki.ensure(
                agent_max_ttl_seconds=settings.agent_certificate_ttl_seconds,
                gateway_ttl_seconds=settings.gateway_certificate_ttl_seconds,
            )
            hub = AgentHub()
            providers = ProviderRegistry(settings, vault)
            try:
                extra_hosts = await providers.start()
                gateway = Gateway(settings, db, pki, hub, extra_hosts=extra_hosts)
                try:
                    await gateway.start()
                except OSError as exc:  # taken since the check above (the gateway names it)
                    raise SettingsError(
                        f"agent gateway: {exc}; set MAILFLEET_GRPC_ADDR and "
                        "MAILFLEET_ENROLL_ADDR to free addresses"
                    ) from None
                if count := await _local_vpss(db):
                    if settings.local_provider:
                        print(f"picked up {_vpss(count)} (their agents reconnect)", flush=True)
                    else:
                        print(
                            f"{_vpss(count)} left unmanaged: the local provider is off "
                            "(MAILFLEET_LOCAL_PROVIDER=1)",
                            flush=True,
                        )
                workflow = Workflow(settings, db, vault, pki, hub, providers)
                runner = ProvisioningRunner(settings, db, workflow)
                runner_task = asyncio.create_task(runner.run())
                switches = IpSwitchRunner(
                    settings, db, ip_switch.Workflow(settings, db, vault, providers)
                )
                switch_task = asyncio.create_task(switches.run())
                resizes = ResizeRunner(settings, db, resizing.Workflow(settings, db, providers))
                resize_task = asyncio.create_task(resizes.run())
                periodic = PeriodicJobs(
                    db,
                    periodic_jobs(db, vault, settings, providers),
                    settings.periodic_seconds,
                    handlers.wake,
                    gateway.telemetry.time_periodic_job,
                )
                periodic_task = asyncio.create_task(periodic.run())
                health.configure(settings)
                mail_stats.configure(settings)
                sweep_task = asyncio.create_task(Sweep(db, settings).run())
                dnsbl_task = asyncio.create_task(DnsblSweep(db, settings).run())
                package = AgentPackage.from_settings(settings)
                # built while the rest starts (the first VPS need not wait)
                warm = package.warm() if package.needed(settings) else asyncio.sleep(0)
                package_task = asyncio.create_task(warm)
                observer = SmtpObserver.from_settings(settings)
                try:
                    if observer is not None:
                        await observer.start()
                    app = create_app(
                        settings,
                        database=db,
                        vault=vault,
                        hub=hub,
                        telemetry=gateway.telemetry.registry,
                        providers=providers,
                        wake_workflow=runner.wake,
                    )
                    app.state.agent_package = package
                    sockets = [api_socket, *_provider_api_sockets(settings, extra_hosts)]
                    try:
                        return await _serve_api(settings, app, db, sockets, bootstrap_admin_key)
                    finally:
                        for extra in sockets[1:]:
                            extra.close()
                finally:
                    tasks = (runner_task, switch_task, resize_task, periodic_task, sweep_task)
                    for task in (*tasks, dnsbl_task, package_task):
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                    if observer is not None:
                        await observer.stop()
                    await gateway.stop()
            finally:
                await providers.aclose()
    finally:
        await db.dispose()


def run(settings: Settings, *, bootstrap_admin_key: bool = False) -> int:
    try:
        return asyncio.run(serve(settings, bootstrap_admin_key=bootstrap_admin_key))
    except KeyboardInterrupt:
        return 130
    finally:
        sys.stdout.flush()
