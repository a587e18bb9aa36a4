"""Storing results: the flap guard, unknowns in a row, the overall state, history, and the
signals that open and resolve incidents. Every time is given (an injected clock)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import select

from control_plane.db.engine import Database
from control_plane.health import service
from control_plane.health.results import Result
from control_plane.incidents import service as incidents_service
from control_plane.incidents.models import Incident
from control_plane.settings import Settings
from tests.health.fleet import a_server, a_tenant, at, changes, checks_by_name, plan

RULES = service.Rules(
    flap=timedelta(seconds=30),
    unknowns_critical=3,
    interval=timedelta(seconds=300),
    queue_threshold=100,
)


async def record(db: Database, server_id: uuid.UUID, seconds: float, *results: Result) -> None:
    async with db.session() as session:
        await service.record_results(session, server_id, results, at(seconds), rules=RULES)


def failing(check: str = "smtp.25", severity: str = "critical") -> Result:
    return Result(check, "failing", severity, "connection refused", "refused", "an SMTP banner")  # type: ignore[arg-type]


def ok(check: str = "smtp.25") -> Result:
    return Result(check, "ok", "info", "220 mx1 ESMTP")


def unknown(check: str = "smtp.25") -> Result:
    return Result(check, "unknown", "warning", "timed out after 10 s")


async def open_incidents(db: Database, server_id: uuid.UUID) -> Sequence[Incident]:
    async with db.session() as session:
        rows = await session.scalars(
            select(Incident).where(
                Incident.subject_id == str(server_id), Incident.state != "resolved"
            )
        )
        return list(rows)


async def test_a_failure_counts_only_after_its_recheck(db: Database) -> None:
    server_id = await a_server(db, await a_tenant(db))
    await record(db, server_id, 0, ok())
    assert (await checks_by_name(db, server_id))["smtp.25"].state == "ok"

    await record(db, server_id, 100, failing())
    row = (await checks_by_name(db, server_id))["smtp.25"]
    assert (row.state, row.pending_state, row.pending_since) == ("ok", "failing", at(100))
    schedule = await plan(db, server_id)
    assert schedule is not None and schedule.next_run_at == at(130)  # the re-check is due
    assert await open_incidents(db, server_id) == []

    await record(db, server_id, 110, failing())  # too early to count (a manual run)
    assert (await checks_by_name(db, server_id))["smtp.25"].state == "ok"

    await record(db, server_id, 131, failing())
    row = (await checks_by_name(db, server_id))["smtp.25"]
    assert (row.state, row.severity, row.pending_state) == ("failing", "critical", None)
    assert (row.detail, row.observed, row.threshold) == (
        "connection refused",
        "refused",
        "an SMTP banner",
    )
    assert row.changed_at == at(131) and row.last_run_at == at(131)
    [incident] = await open_incidents(db, server_id)
    # It dates from the first sighting, so its group window does not wait the re-check again.
    assert (incident.check, incident.opened_at) == ("smtp.25", at(100))

    await record(db, server_id, 200, ok())  # recovery counts at once
    row = (await checks_by_name(db, server_id))["smtp.25"]
    assert (row.state, row.severity, row.changed_at) == ("ok", "info", at(200))
    assert await open_incidents(db, server_id) == []
    history = [(c.state, c.previous_state, c.at) for c in await changes(db, server_id)]
    assert history == [("ok", None, at(0)), ("failing", "ok", at(131)), ("ok", "failing", at(200))]


async def test_a_flap_that_recovers_before_its_recheck_never_counts(db: Database) -> None:
    server_id = await a_server(db, await a_tenant(db))
    await record(db, server_id, 0, ok())
    await record(db, server_id, 10, failing())
    await record(db, server_id, 40, ok())
    await record(db, server_id, 50, failing())  # a new flap starts its own wait
    row = (await checks_by_name(db, server_id))["smtp.25"]
    assert (row.state, row.pending_since) == ("ok", at(50))
    assert [c.state for c in await changes(db, server_id)] == ["ok"]
    assert await open_incidents(db, server_id) == []


async def test_three_unknowns_in_a_row_are_critical(db: Database) -> None:
    server_id = await a_server(db, await a_tenant(db))
    await record(db, server_id, 0, ok())
    await record(db, server_id, 300, unknown())
    row = (await checks_by_name(db, server_id))["smtp.25"]
    assert (row.state, row.severity, row.unknowns) == ("unknown", "warning", 1)
    assert await open_incidents(db, server_id) == []  # could not check: no verdict
    await record(db, server_id, 600, unknown())
    await record(db, server_id, 900, unknown())
    row = (await checks_by_name(db, server_id))["smtp.25"]
    assert (row.state, row.severity, row.unknowns) == ("unknown", "critical", 3)
    assert [i.check for i in await open_incidents(db, server_id)] == ["smtp.25"]
    await record(db, server_id, 1200, ok())
    row = (await checks_by_name(db, server_id))["smtp.25"]
    assert (row.state, row.unknowns) == ("ok", 0)
    assert await open_incidents(db, server_id) == []
    history = [(c.state, c.severity) for c in await changes(db, server_id)]
    assert history == [
        ("ok", "info"),
        ("unknown", "warning"),
        ("unknown", "critical"),
        ("ok", "info"),
    ]


async def test_an_unknown_recheck_does_not_confirm_a_failure(db: Database) -> None:
    server_id = await a_server(db, await a_tenant(db))
    await record(db, server_id, 0, ok())
    await record(db, server_id, 10, failing())
    await record(db, server_id, 41, unknown())
    row = (await checks_by_name(db, server_id))["smtp.25"]
    assert (row.state, row.pending_state) == ("unknown", None)
    await record(db, server_id, 50, failing())  # waits again
    assert (await checks_by_name(db, server_id))["smtp.25"].state == "unknown"


@pytest.mark.postgres_only  # SQLite has one writer: the second waits at its first write
async def test_two_writers_of_one_check_take_turns(db: Database) -> None:
    """The sweep and an agent command's result can record one check at once: the second
    waits for the first and folds its result into what the first stored (they once both
    read the old row, and it kept one's state with the other's severity and detail)."""
    server_id = await a_server(db, await a_tenant(db))
    await record(db, server_id, 0, failing())  # pending; its re-check is due at 30
    async with db.session() as sweep:
        await service.record_results(sweep, server_id, [unknown()], at(40), rules=RULES)
        result = asyncio.create_task(record(db, server_id, 41, failing()))
        await asyncio.sleep(0.3)
        assert not result.done()  # it waits for the row
    await asyncio.wait_for(result, 10)
    row = (await checks_by_name(db, server_id))["smtp.25"]
    assert (row.state, row.severity, row.detail) == ("unknown", "warning", "timed out after 10 s")
    assert (row.pending_state, row.pending_since) == ("failing", at(41))  # counted afresh


async def test_a_first_failure_waits_for_its_recheck_too(db: Database) -> None:
    server_id = await a_server(db, await a_tenant(db))
    await record(db, server_id, 0, failing("backup.stale", "warning"))
    row = (await checks_by_name(db, server_id))["backup.stale"]
    assert (row.state, row.pending_state) == ("unknown", "failing")
    await record(db, server_id, 30, failing("backup.stale", "critical"))
    row = (await checks_by_name(db, server_id))["backup.stale"]
    assert (row.state, row.severity) == ("failing", "critical")
    await record(db, server_id, 60, failing("backup.stale", "warning"))  # severity: at once
    assert (await checks_by_name(db, server_id))["backup.stale"].severity == "warning"


async def test_overall_state(db: Database) -> None:
    server_id = await a_server(db, await a_tenant(db))
    assert service.overall([]) == "unknown"
    await record(db, server_id, 0, ok("a"), ok("b"))
    assert service.overall(list((await checks_by_name(db, server_id)).values())) == "ok"
    await record(db, server_id, 1, unknown("b"))
    assert service.overall(list((await checks_by_name(db, server_id)).values())) == "unknown"
    await record(db, server_id, 2, failing("a", "warning"))
    await record(db, server_id, 40, failing("a", "warning"))
    assert service.overall(list((await checks_by_name(db, server_id)).values())) == "warning"
    await record(db, server_id, 41, failing("a", "critical"))
    assert service.overall(list((await checks_by_name(db, server_id)).values())) == "critical"


async def test_history_between_two_times(db: Database) -> None:
    server_id = await a_server(db, await a_tenant(db))
    for seconds in (0, 100, 200):
        await record(db, server_id, seconds, unknown())
        await record(db, server_id, seconds + 50, ok())
    async with db.session() as session:
        found = await service.history(session, server_id, at(100), at(200), 100)
    assert [(c.at, c.state) for c in found] == [(at(100), "unknown"), (at(150), "ok")]


async def test_results_of_a_deleted_server_are_dropped(db: Database) -> None:
    async with db.session() as session:
        await service.record_results(session, uuid.uuid4(), [ok()], at(0), rules=RULES)


def test_the_policy_follows_the_settings(settings: Settings) -> None:
    custom = settings.model_copy(update={"health_flap_seconds": 1.5, "mailu_queue_threshold": 7})
    rules = service.Rules.of(custom)
    assert rules.flap == timedelta(seconds=1.5) and rules.queue_threshold == 7


async def test_a_resolve_the_incidents_missed_is_sent_again_at_the_next_ok(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_id = await a_server(db, await a_tenant(db))
    await record(db, server_id, 0, ok())
    await record(db, server_id, 10, failing())
    await record(db, server_id, 40, failing())
    assert [i.check for i in await open_incidents(db, server_id)] == ["smtp.25"]

    async def unavailable(*args: object) -> None:
        raise RuntimeError("incidents are down")

    with monkeypatch.context() as patch:
        patch.setattr(incidents_service, "observe", unavailable)
        await record(db, server_id, 50, ok())  # stored; the resolve is lost
    assert (await checks_by_name(db, server_id))["smtp.25"].state == "ok"
    assert [i.check for i in await open_incidents(db, server_id)] == ["smtp.25"]

    await record(db, server_id, 60, ok())  # unchanged, but its incident is still open
    assert await open_incidents(db, server_id) == []
