"""The sample alerting rules in packaging/prometheus name only figures a replica exports, and
the replica's own figures (dispatch latency, ingest backlog) move with what happens."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.daemon import sample_to_proto
from agent.metrics import Sampler
from control_plane.db.engine import Database
from control_plane.gateway.telemetry import GatewayTelemetry
from control_plane.gateway.translate import sample_rows
from control_plane.metrics.fleet import fleet_registry
from control_plane.metrics.ingest import MetricIngest
from mailfleet.agent.v1 import agent_pb2
from tests.support.rows import a_server_row, a_tenant

RULES = Path(__file__).resolve().parents[2] / "packaging" / "prometheus" / "mailfleet.rules.yml"
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def _base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


async def test_every_rule_names_an_exported_figure(db: Database) -> None:
    telemetry = GatewayTelemetry()
    telemetry.watch_ingest(MetricIngest(db))
    async with db.session() as session:
        fleet = await fleet_registry(session, timedelta(seconds=40))
    exported = {
        _base(family.name)
        for registry in (telemetry.registry, fleet)
        for family in text_string_to_metric_families(generate_latest(registry).decode())
    }
    rules = [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]
    assert len(rules) >= 8
    for rule in rules:
        assert rule["alert"].startswith("MailFleet") and rule["for"], rule
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule
        assert rule["annotations"]["summary"], rule
        named = set(re.findall(r"\b(mailfleet_[a-z_]+)", rule["expr"]))
        assert named or "up{" in rule["expr"], rule
        assert {_base(n) for n in named} <= exported, (rule["alert"], named - exported)


async def test_ingest_backlog_is_read_at_scrape_time(db: Database) -> None:
    """Rows an agent sent wait for the ingest's next commit: the figures show them (count
    and age) until it commits, then fall back to zero."""
    tenant = await a_tenant(db)
    server = await a_server_row(db, tenant, name="ingest")
    telemetry = GatewayTelemetry()
    ingest = MetricIngest(db, interval=3600)  # its loop is not running: only flush commits
    telemetry.watch_ingest(ingest)

    def figure(name: str) -> float:
        text = generate_latest(telemetry.registry).decode()
        (family,) = [f for f in text_string_to_metric_families(text) if f.name == name]
        return float(family.samples[0].value)

    assert figure("mailfleet_ingest_pending_rows") == figure("mailfleet_ingest_lag_seconds") == 0
    sample = sample_to_proto(Sampler().sample())
    batch = agent_pb2.MetricBatch(sequence=1, samples=[sample, sample])
    waiting = asyncio.create_task(ingest.submit(sample_rows(tenant, server.id, batch)))
    await asyncio.sleep(0.05)
    assert figure("mailfleet_ingest_pending_rows") == 2
    assert figure("mailfleet_ingest_lag_seconds") >= 0.05
    await ingest.flush()
    assert await waiting == 2
    assert figure("mailfleet_ingest_pending_rows") == figure("mailfleet_ingest_lag_seconds") == 0
