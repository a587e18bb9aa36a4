"""Metering on both databases: spans of server-hours and IP-hours as the hooks write them,
backup sizes measured by real restic, and the ``cost-metering`` job's bandwidth, split
weights and safety net. (The provisioning, resize and deprovisioning hooks are exercised
where they live: tests/provisioning/test_workflow.py, tests/resize/test_resize.py.)"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete

from agent.backup import commands as agent_backup
from control_plane.backups import schedule
from control_plane.backups import service as backups
from control_plane.backups.models import BackupPolicy
from control_plane.costs import meter
from control_plane.costs.backup_storage import repository_kind, sizes_by_kind
from control_plane.costs.jobs import MeteringJob, meter_all
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.gateway.hub import AgentHub
from control_plane.ips import service as ips
from control_plane.mail.models import Mailbox, MailDomain
from control_plane.metrics import partitions
from control_plane.metrics.models import MetricRollup
from control_plane.provisioning.registry import ProviderRegistry
from control_plane.provisioning.runner import ProvisioningRunner
from control_plane.provisioning.workflow import Workflow
from control_plane.servers.models import Server
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from control_plane.vault.pki import AgentPki
from control_plane.workspaces.models import Workspace
from tests.agent.test_backup import make_maildir, raw_data_size
from tests.agent.test_backup import payload as agent_payload
from tests.conftest import MakeTenant
from tests.control_plane.costs.ledger import readings_of, spans_of
from tests.control_plane.test_backups_api import report, server_with_policy
from tests.ips.addresses import fresh_addresses
from tests.support.rows import a_server_row, a_tenant

NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
GIB = 1024**3


async def metered_server(db: Database, tenant_id: uuid.UUID, **fields: Any) -> Server:
    """A ready server on a provider's plan, its instance running (as the runner leaves it)."""
    server = await a_server_row(
        db, tenant_id, name=f"m-{uuid.uuid4().hex[:8]}", provider="hostwinds", plan="12",
        region="2", instance_id=f"i-{uuid.uuid4().hex[:8]}", state="ready", **fields,
    )  # fmt: skip
    async with db.session() as session:
        await meter.open_span(session, server, "server", "12", NOON - timedelta(days=1))
    return server


def test_the_repository_kind_is_restics_url_scheme() -> None:
    for url, kind in (
        ("s3:https://s3.amazonaws.com/bucket/mf", "s3"),
        ("s3:127.0.0.1:9000/bucket", "s3"),
        ("b2:bucket:path", "b2"),
        ("gs:bucket:/mf", "gs"),
        ("azure:container:/mf", "azure"),
        ("sftp:backup@host:/srv/restic", "sftp"),
        ("sftp://backup@host:2222//srv/restic", "sftp"),
        ("rest:https://user:***@host:8000/mf/", "rest"),
        ("swift:container:/mf", "swift"),
        ("rclone:remote:bucket/mf", "rclone"),
        ("/srv/restic", "local"),
        ("/srv/odd:name", "local"),
    ):
        assert repository_kind(url) == kind, url


def test_sizes_add_up_per_kind_and_a_kind_not_fully_measured_is_left_out() -> None:
    both_s3 = BackupPolicy(repository_url="s3:h/a", offsite_url="s3:h/b")
    mixed = BackupPolicy(repository_url="/srv/r", offsite_url="b2:bucket:mf")
    measured = {"repository_size": 100, "offsite_size": 40}
    assert sizes_by_kind(both_s3, measured) == {"s3": 140}
    assert sizes_by_kind(mixed, measured) == {"local": 100, "b2": 40}
    primary_only = {"repository_size": 100}  # the offsite could not be measured
    assert sizes_by_kind(both_s3, primary_only) == {}
    assert sizes_by_kind(mixed, primary_only) == {"local": 100}
    assert sizes_by_kind(mixed, {"repository_size": True, "offsite_size": -1}) == {}


async def test_a_resize_ends_one_span_and_starts_the_next_at_the_same_instant(
    db: Database,
) -> None:
    tenant = await a_tenant(db, "meter")
    server = await metered_server(db, tenant)
    confirmed = NOON + timedelta(minutes=7)
    for _ in range(2):  # the step run again after a crash changes nothing
        async with db.session() as session:
            await meter.change_plan(session, server, "13", confirmed)
    old, new = await spans_of(db, server.id, "server")
    assert (old.item, old.ended_at, new.item, new.started_at) == ("12", confirmed, "13", confirmed)
    assert new.ended_at is None and new.workspace_id is None and new.provider == "hostwinds"

    gone_at = NOON + timedelta(hours=3)
    async with db.session() as session:
        assert await meter.close_server(session, server.id, gone_at) == 1
        await session.execute(delete(Server).where(Server.id == server.id))
    spans = await spans_of(db, server.id, "server")
    assert [(s.item, s.ended_at) for s in spans] == [("12", confirmed), ("13", gone_at)]


async def test_addresses_have_spans_from_assignment_to_release(db: Database) -> None:
    tenant = await a_tenant(db, "meter")
    server, other = await metered_server(db, tenant), await metered_server(db, tenant)
    main, extra = fresh_addresses(2)
    later = NOON + timedelta(hours=2)
    async with db.session() as session:
        await ips.sync_server(session, server, [main, extra], NOON)
    async with db.session() as session:  # the extra address went, then the provider moved it
        await ips.sync_server(session, server, [main], later)
        await ips.sync_server(session, other, [extra], later + timedelta(hours=1))
    async with db.session() as session:
        await ips.sync_server(session, server, [main, extra], later + timedelta(hours=2))
    spans = [(s.item, s.started_at, s.ended_at) for s in await spans_of(db, server.id, "ip")]
    # spans_of orders by start, then by the address as text ("…10" before "…9")
    assert spans == sorted(
        [(main, NOON, None), (extra, NOON, later), (extra, later + timedelta(hours=2), None)],
        key=lambda span: (span[1], span[0]),
    )
    moved = await spans_of(db, other.id, "ip")
    assert [(s.item, s.started_at, s.ended_at) for s in moved] == [
        (extra, later + timedelta(hours=1), later + timedelta(hours=2))
    ]

    # A manual server is its owner's machine: its addresses are not billed.
    manual = await a_server_row(db, tenant, name=f"own-{uuid.uuid4().hex[:6]}", state="ready")
    async with db.session() as session:
        await ips.sync_server(session, manual, fresh_addresses(1), NOON)
    assert await spans_of(db, manual.id) == []


async def test_a_backup_records_the_repository_size_restic_measures(
    client: httpx.AsyncClient, make_tenant: MakeTenant, db: Database, tmp_path: Path
) -> None:
    root, repo = tmp_path / "vps", tmp_path / "repo"
    make_maildir(root / "mailu", mailboxes=2, messages=30)

    def progress(percent: int, message: str) -> None:
        pass

    result = await agent_backup.run(root, agent_payload(repo), progress)
    measured = raw_data_size(repo)
    assert result["repository_size"] == measured > 0

    tenant = await make_tenant()
    server_id, base = await server_with_policy(client, tenant, db)  # repository /srv/r: local
    run = (await client.post(f"{base}/backups", headers=tenant.headers)).json()
    await report(db, server_id, run["id"], result)
    older = (await client.post(f"{base}/backups", headers=tenant.headers)).json()
    legacy = {k: v for k, v in result.items() if k != "repository_size"}  # an older agent
    legacy["short_id"] = "0ld4gent"
    await report(db, server_id, older["id"], legacy)
    async with db.session() as session:
        assert await schedule.absorb_finished(session) >= 2
    today = utcnow().date()
    assert await readings_of(db, server_id) == {("backup_storage", "local", today): measured}

    # A mailbox goes, a second snapshot, then forget + prune: the repository shrinks, and
    # the pruning's measurement replaces the day's reading.
    shutil.rmtree(root / "mailu" / "mail" / "user1@example.net")
    await agent_backup.run(root, agent_payload(repo), progress)
    keep = {"last": 1}
    pruned = await agent_backup.forget(root, agent_payload(repo, keep=keep), progress)
    assert pruned["pruned"] is True and pruned["repository_size"] == raw_data_size(repo)
    assert 0 < pruned["repository_size"] < measured
    async with db.session() as session:
        server = await session.get(Server, uuid.UUID(server_id))
        policy = await backups.require_policy(session, server) if server else None
        assert server is not None and policy is not None
        forget = await backups.queue(session, server, policy, "backup.forget", keep=keep)
    await report(db, server_id, str(forget.id), pruned)
    async with db.session() as session:
        assert await schedule.absorb_finished(session) >= 1
    assert await readings_of(db, server_id) == {
        ("backup_storage", "local", today): pruned["repository_size"]
    }


async def rollup(server: Server, day_offset: int, minute: int, rate: float, count: int) -> Any:
    bucket = datetime.combine(utcnow().date(), datetime.min.time(), tzinfo=UTC)
    bucket += timedelta(days=day_offset, minutes=minute)
    return MetricRollup(
        tenant_id=server.tenant_id, server_id=server.id, metric="net_tx_bytes_per_second",
        bucket=bucket, count=count, sum=rate * count, min=rate, max=rate,
    )  # fmt: skip


async def test_the_metering_job_reads_bandwidth_and_shares_and_a_rerun_changes_nothing(
    db: Database, settings: Settings
) -> None:
    tenant = await a_tenant(db, "meter")
    async with db.session() as session:
        clients = [Workspace(tenant_id=tenant, name=f"client-{n}") for n in range(3)]
        session.add_all(clients)
        await session.flush()
    a, b, c = (w.id for w in clients)
    shared = await metered_server(db, tenant)
    owned = await metered_server(db, tenant, workspace_id=a)
    today = utcnow().date()
    yesterday = today - timedelta(days=1)
    async with db.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            await partitions.make_ahead(session, yesterday, today)
        session.add_all([
            await rollup(shared, -1, 0, 1000.0, 6),  # 60 s at 1000 B/s
            await rollup(shared, -1, 90, 500.0, 2),  # 60 s at 500 B/s
            await rollup(shared, 0, 30, 100.5, 4),
            await rollup(owned, 0, 1, 2000.0, 1),
        ])  # fmt: skip
        domains = {}
        for name, workspace in (("a1", a), ("a2", a), ("b1", b), ("c1", c), ("none", None)):
            domain = MailDomain(
                tenant_id=tenant, server_id=shared.id, workspace_id=workspace,
                name=f"{name}-{uuid.uuid4().hex[:8]}.example",
            )  # fmt: skip
            session.add(domain)
            domains[name] = domain
        await session.flush()
        for name, boxes, quota in (("a1", 2, GIB), ("a2", 1, 2 * GIB), ("b1", 3, GIB)):
            for n in range(boxes):
                session.add(
                    Mailbox(
                        tenant_id=tenant, domain_id=domains[name].id, enabled=True,
                        address=f"u{n}@{domains[name].name}", quota_bytes=quota,
                    )
                )  # fmt: skip
    job = MeteringJob(settings.model_copy(update={"cost_metering_interval_seconds": 3600}))
    async with db.session() as session:
        assert await job(session) > 0
    bandwidth = await readings_of(db, shared.id, "bandwidth")
    assert bandwidth == {("bandwidth", "", yesterday): 90_000, ("bandwidth", "", today): 6030}
    assert await readings_of(db, owned.id, "bandwidth") == {("bandwidth", "", today): 120_000}
    shares = await readings_of(db, shared.id)
    expected = {
        ("share_domains", str(a)): 2, ("share_mailboxes", str(a)): 3,
        ("share_storage", str(a)): 4 * GIB,
        ("share_domains", str(b)): 1, ("share_mailboxes", str(b)): 3,
        ("share_storage", str(b)): 3 * GIB,
        ("share_domains", str(c)): 1, ("share_mailboxes", str(c)): 0, ("share_storage", str(c)): 0,
        ("share_domains", ""): 1, ("share_mailboxes", ""): 0, ("share_storage", ""): 0,
    }  # fmt: skip
    assert {(r, i): q for (r, i, d), q in shares.items() if r != "bandwidth"} == expected
    assert all(d == today for (r, _, d) in shares if r.startswith("share_"))
    assert not [r for (r, _, _) in await readings_of(db, owned.id) if r.startswith("share_")]

    async with db.session() as session:  # the interval has not passed: not even a look
        assert await job(session) == 0
    async with db.session() as session:  # the same facts again: nothing changes
        assert await meter_all(session, utcnow()) == 0
    assert await readings_of(db, shared.id) == shares

    # Late data completes yesterday; a workspace's domain leaves the server: its weight is 0.
    async with db.session() as session:
        session.add(await rollup(shared, -1, 600, 10.0, 1))
        await session.execute(delete(MailDomain).where(MailDomain.id == domains["b1"].id))
    async with db.session() as session:
        assert await meter_all(session, utcnow()) == 4
    after = await readings_of(db, shared.id)
    assert after[("bandwidth", "", yesterday)] == 90_600
    assert [after[(r, str(b), today)] for r in ("share_domains", "share_mailboxes",
                                                  "share_storage")] == [0, 0, 0]  # fmt: skip


async def test_the_safety_net_opens_missed_spans_and_ends_those_of_servers_gone(
    db: Database,
) -> None:
    tenant = await a_tenant(db, "meter")
    missed = await a_server_row(
        db, tenant, name=f"missed-{uuid.uuid4().hex[:6]}", provider="hostwinds", plan="13",
        instance_id="i-missed", state="failed",
    )  # fmt: skip
    leaving = await a_server_row(
        db, tenant, name=f"leaving-{uuid.uuid4().hex[:6]}", provider="hostwinds", plan="12",
        instance_id="i-leaving", state="deprovisioning",
    )  # fmt: skip
    moved = await metered_server(db, tenant)  # its span says 12
    async with db.session() as session:
        row = await session.get(Server, moved.id)
        assert row is not None
        row.plan = "15"  # as if a resize had been recorded without its hook
    gone = await metered_server(db, tenant)
    (address,) = fresh_addresses(1)
    async with db.session() as session:
        await ips.sync_server(session, gone, [address], NOON)
        await session.execute(delete(Server).where(Server.id == gone.id))  # no hook ran
    now = utcnow()
    async with db.session() as session:
        assert await meter_all(session, now) >= 4
    (opened,) = await spans_of(db, missed.id)
    assert (opened.resource, opened.item, opened.started_at, opened.ended_at) == (
        "server",
        "13",
        now,
        None,
    )
    assert await spans_of(db, leaving.id) == []  # terminated, or about to be
    replanned = [(s.item, s.ended_at) for s in await spans_of(db, moved.id)]
    assert replanned == [("12", now), ("15", None)]
    ended = await spans_of(db, gone.id)
    assert {(s.resource, s.ended_at) for s in ended} == {("server", now), ("ip", now)}
    async with db.session() as session:
        assert await meter_all(session, utcnow()) == 0


async def test_a_deleted_server_leaves_its_spans_closed_and_its_last_bandwidth(
    db: Database, settings: Settings, vault: Vault, pki: AgentPki
) -> None:
    """Deprovisioning's last step deletes the row (and its metrics, by cascade): the ledger
    is closed and read first, in the same transaction."""
    tenant = await a_tenant(db, "meter")
    server = await a_server_row(
        db, tenant, name=f"bye-{uuid.uuid4().hex[:6]}", state="deprovisioning",
        next_step_at=utcnow() - timedelta(seconds=1),
    )  # fmt: skip
    async with db.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            today = utcnow().date()
            await partitions.make_ahead(session, today - timedelta(days=1), today)
        session.add(await rollup(server, 0, 0, 50.0, 3))
        # A span the hooks would not have left open (as if termination had been missed).
        await meter.open_span(session, server, "ip", "198.18.0.1", NOON)
    providers = ProviderRegistry(settings, vault)
    workflow = Workflow(settings, db, vault, pki, AgentHub(), providers)
    runner = ProvisioningRunner(settings, db, workflow)
    try:
        (claimed,) = await runner.leases.claim(
            lambda now: (Server.id == server.id,), Server.next_step_at, 1
        )
        await runner._run_step(claimed)
    finally:
        await providers.aclose()
    async with db.session() as session:
        assert await session.get(Server, server.id) is None
    (span,) = await spans_of(db, server.id)
    assert span.ended_at is not None and span.ended_at > NOON
    assert await readings_of(db, server.id) == {("bandwidth", "", utcnow().date()): 3000}
