"""``mailfleet incident …``, ``silence …`` and ``alert-channel …``: the CLI on the test
database does what the API does (same service functions, same shapes), names the OS user as
the actor, and refuses bad input in one line without writing anything."""

from __future__ import annotations

import getpass
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from control_plane.alerts import channels
from control_plane.alerts.schemas import ChannelCreate
from control_plane.db.base import utcnow
from control_plane.db.engine import Database
from control_plane.incidents import service
from control_plane.incidents.models import Silence
from control_plane.incidents.signals import Signal
from control_plane.settings import Settings
from control_plane.vault.client import Vault
from tests.alerts.receivers import HttpReceiver, verify_signature
from tests.conftest import MakeTenant
from tests.control_plane.cli_fixtures import MakeServer, env, make_server, one_line_error
from tests.support.cli_runner import CliResult, invoke_cli, invoke_cli_async
from tests.support.openbao import DevOpenBao

# The commands run in this process (tests/support/cli_runner.py: the same exit code, lines
# and writes as a `mailfleet` process, without its second or more of start-up), once, on
# PostgreSQL; the services they call are tested on both backends.
pytestmark = pytest.mark.postgres_only

__all__ = ["env", "make_server"]  # fixtures, used by name
ACTOR = f"{getpass.getuser()} (cli)"
SECRET = "a-long-random-shared-secret"


async def all_refused(env: dict[str, str], cases: list[tuple[tuple[str, ...], str]]) -> None:
    """Each command is refused in one line naming ``message`` (in process, in turn)."""
    for args, message in cases:
        one_line_error(await invoke_cli_async(*args, env=env), 2, message)


async def all_ok(env: dict[str, str], *commands: tuple[str, ...]) -> list[CliResult]:
    """Each command succeeds (in turn: in-process commands never run side by side; on a
    thread, so the test's event loop keeps serving its receivers and database)."""
    results = []
    for args in commands:
        result = await invoke_cli_async(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        results.append(result)
    return results


async def open_incidents(db: Database, tenant_id: str, server_id: uuid.UUID) -> None:
    signals = [
        Signal(
            tenant_id=uuid.UUID(tenant_id),
            subject_kind="server",
            subject_id=str(server_id),
            check=check,
            state="failing",
            severity=severity,  # type: ignore[arg-type]
            summary=f"mx: {check} failing",
            server_id=server_id,
        )
        for check, severity in (("smtp.25", "critical"), ("disk./", "warning"))
    ]
    async with db.session() as session:
        await service.observe(session, signals, utcnow())


async def test_incidents_listed_shown_acknowledged_commented_and_resolved(
    env: dict[str, str],
    db: Database,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    make_tenant: MakeTenant,
    make_server: MakeServer,
) -> None:
    tenant = await make_tenant()
    name = f"mx-{uuid.uuid4().hex[:8]}"
    server_id = await make_server(tenant.id, name)
    await open_incidents(db, tenant.id, server_id)
    api = await client.get(
        "/api/v1/incidents", params={"server_id": str(server_id)}, headers=tenant.headers
    )
    listed, table = await all_ok(
        env,
        ("incident", "list", "--server", name, "--json"),
        ("incident", "list", "--state", "open", "--server", str(server_id)),
    )
    assert json.loads(listed.stdout) == api.json()["items"]
    by_check = {i["check"]: i["id"] for i in api.json()["items"]}
    assert set(by_check) == {"smtp.25", "disk./"}
    assert all(ident in table.stdout for ident in by_check.values())
    assert f"server {name}" in table.stdout

    smtp, disk = by_check["smtp.25"], by_check["disk./"]
    acked, commented, resolved = await all_ok(
        env,
        ("incident", "ack", smtp),
        ("incident", "comment", smtp, "restarting postfix"),
        ("incident", "resolve", disk),
    )
    assert acked.stdout == f"{smtp}: acknowledged by {ACTOR}\n"
    assert commented.stdout == f"{smtp}: comment added by {ACTOR}\n"
    assert resolved.stdout == f"{disk}: resolved by {ACTOR}\n"

    shown, table = await all_ok(
        env, ("incident", "show", smtp, "--json"), ("incident", "show", smtp)
    )
    detail = (await client.get(f"/api/v1/incidents/{smtp}", headers=tenant.headers)).json()
    assert json.loads(shown.stdout) == detail
    assert (detail["state"], detail["acknowledged_by"]) == ("acknowledged", ACTOR)
    kinds = [(e["kind"], e["actor"], e["detail"]) for e in detail["timeline"]]
    assert ("acknowledged", ACTOR, f"acknowledged by {ACTOR}") in kinds
    assert ("commented", ACTOR, "restarting postfix") in kinds
    for text in ("triggered", "acknowledged", "commented", "restarting postfix", "escalation"):
        assert text in table.stdout
    gone = (await client.get(f"/api/v1/incidents/{disk}", headers=tenant.headers)).json()
    assert (gone["state"], gone["resolved_by"]) == ("resolved", ACTOR)

    missing = str(uuid.uuid4())
    cases = [
        (("incident", "resolve", disk), f"incident {disk} is already resolved"),
        (("incident", "ack", disk), f"incident {disk} is already resolved"),
        (("incident", "show", missing), f"incident {missing} not found"),
        (("incident", "list", "--server", "nope-x1"), "--server: server 'nope-x1' not found"),
    ]
    await all_refused(env, cases)
    again = (await client.get(f"/api/v1/incidents/{disk}", headers=tenant.headers)).json()
    assert again == gone  # the refused resolve and acknowledge changed nothing
    audit = await client.get(
        "/api/v1/audit-events",
        params={"object_type": "incident", "object_id": smtp},
        headers=admin_headers,
    )
    actions = sorted((e["action"], e["actor_kind"], e["user"]) for e in audit.json()["items"])
    assert actions == [
        ("incident.ack", "cli", getpass.getuser()),
        ("incident.comment", "cli", getpass.getuser()),
    ]
    assert (await invoke_cli_async("incident", "resolve", smtp, env=env)).returncode == 0


async def silence_count(db: Database, tenant_id: str) -> int:
    async with db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Silence)
            .where(Silence.tenant_id == uuid.UUID(tenant_id))
        )
        return int(count or 0)


async def test_silences_created_listed_and_expired(
    env: dict[str, str],
    db: Database,
    client: httpx.AsyncClient,
    make_tenant: MakeTenant,
    make_server: MakeServer,
) -> None:
    tenant, other = await make_tenant(), await make_tenant()
    name = f"mx-{uuid.uuid4().hex[:8]}"
    server_id = await make_server(tenant.id, name)
    theirs = await make_server(other.id, f"mx-{uuid.uuid4().hex[:8]}")
    made = await invoke_cli_async(
        "silence", "create", "--tenant", tenant.name, "--server", name, "--check", "disk.*",
        "--for", "1h30m", "--comment", "resizing the disk", env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    silence_id = made.stdout.strip()
    url = f"/api/v1/silences/{silence_id}"
    silence = (await client.get(url, headers=tenant.headers)).json()
    assert (silence["server_id"], silence["check"], silence["severity"]) == (
        str(server_id),
        "disk.*",
        None,
    )
    assert (silence["created_by"], silence["comment"], silence["active"]) == (
        ACTOR,
        "resizing the disk",
        True,
    )
    span = datetime.fromisoformat(silence["ends_at"]) - datetime.fromisoformat(silence["starts_at"])
    assert abs(span - timedelta(minutes=90)) < timedelta(seconds=30)

    listed, table = await all_ok(
        env, ("silence", "list", "--active", "--json"), ("silence", "list", "--active")
    )
    mine = [s for s in json.loads(listed.stdout) if s["id"] == silence_id]
    assert mine == [silence]
    assert silence_id in table.stdout and "resizing the disk" in table.stdout

    past = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%MZ")
    base = ("silence", "create", "--tenant", tenant.id, "--comment", "why")
    cases = [
        ((*base, "--for", "2h"), "a silence needs at least one matcher: --server, check or"),
        ((*base, "--check", "cpu", "--until", past), "--until must be after --from"),
        ((*base, "--check", "cpu", "--from", past, "--for", "1m"), "--until is in the past"),
        ((*base, "--severity", "fatal", "--for", "2h"), "--severity: Input should be"),
        ((*base, "--check", "di*sk", "--for", "2h"), "--check: String should match pattern"),
        ((*base, "--server", str(theirs), "--for", "2h"), "--server: the server belongs to"),
        ((*base, "--server", "nope-x1", "--for", "2h"), "--server: server 'nope-x1' not found"),
        (
            ("silence", "create", "--tenant", "nope-x1", "--check", "cpu", "--for", "2h",
             "--comment", "why"),
            "--tenant: tenant 'nope-x1' not found",
        ),
        (("silence", "expire", str(uuid.uuid4())), "not found"),
    ]  # fmt: skip
    await all_refused(env, cases)
    assert await silence_count(db, tenant.id) == 1  # nothing half-written

    expired = await invoke_cli_async("silence", "expire", silence_id, env=env)
    assert expired.returncode == 0, expired.stderr
    assert expired.stdout.startswith(f"{silence_id}: ends ")
    assert (await client.get(url, headers=tenant.headers)).json()["active"] is False


def test_usage_errors_are_one_line_before_any_database(tmp_path: Path) -> None:
    """Flags the CLI checks itself: refused before it looks for a database (none is made)."""
    env = {"MAILFLEET_HOME": str(tmp_path)}
    ident = str(uuid.uuid4())
    base = ("silence", "create", "--tenant", "acme", "--comment", "why", "--check", "cpu")
    cases = [
        (("incident", "list", "--state", "closed"), "--state: one of open, acknowledged"),
        (("incident", "ack", "nope"), "ID: not a valid id: 'nope'"),
        (("incident", "comment", ident, "  "), "TEXT: "),
        (base, "give exactly one of --until TIME or --for DURATION"),
        ((*base, "--for", "2h", "--until", "2030-01-01T00:00Z"), "give exactly one of"),
        ((*base, "--for", "2 hours"), "--for: not a duration like 2h, 90m or 1d12h: '2 hours'"),
        ((*base, "--for", "0m"), "--for: must be longer than zero"),
        ((*base, "--until", "soon"), "--until: not a time like"),
        (("alert-channel", "test", "nope"), "ID: not a valid id: 'nope'"),
    ]
    for args, message in cases:
        one_line_error(invoke_cli(*args, env=env), 2, message)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def vault_env(env: dict[str, str], openbao: DevOpenBao, tmp_path: Path) -> dict[str, str]:
    token_file = tmp_path / "token"
    token_file.write_text(openbao.token)
    return {
        **env,
        "MAILFLEET_VAULT_ADDR": openbao.url,
        "MAILFLEET_VAULT_TOKEN_FILE": str(token_file),
        "MAILFLEET_ALERT_ALLOW_PRIVATE_TARGETS": "true",  # the receivers are on loopback
        "MAILFLEET_ALERT_MAX_ATTEMPTS": "1",  # a failed test is final: nothing left to retry
        "MAILFLEET_ALERT_SEND_TIMEOUT_SECONDS": "3",
    }


@pytest_asyncio.fixture
async def receivers() -> AsyncIterator[tuple[HttpReceiver, HttpReceiver]]:
    async with HttpReceiver().running() as good, HttpReceiver(default=500).running() as bad:
        yield good, bad


async def test_alert_channels_listed_and_tested(
    vault_env: dict[str, str],
    db: Database,
    vault: Vault,
    settings: Settings,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    make_tenant: MakeTenant,
    receivers: tuple[HttpReceiver, HttpReceiver],
) -> None:
    tenant = await make_tenant()
    good, bad = receivers
    allowed = settings.model_copy(update={"alert_allow_private_targets": True})
    made: dict[str, str] = {}
    async with db.session() as session:
        for name, receiver in (("ops", good), ("broken", bad)):
            body = ChannelCreate(
                name=name, kind="webhook", url=f"{receiver.url}/hook", secret=SECRET
            )
            owner = uuid.UUID(tenant.id)
            made[name] = str(
                (await channels.create_channel(session, vault, allowed, owner, body)).id
            )

    listed, table = await all_ok(
        vault_env,
        ("alert-channel", "list", "--tenant", tenant.name, "--json"),
        ("alert-channel", "list", "--tenant", tenant.id),
    )
    api = await client.get(
        "/api/v1/alert-channels", params={"tenant_id": tenant.id}, headers=admin_headers
    )
    assert json.loads(listed.stdout) == api.json()
    assert {c["name"] for c in api.json()} == {"ops", "broken"}
    assert made["ops"] in table.stdout and "webhook" in table.stdout
    for output in (listed.stdout, table.stdout):
        assert SECRET not in output and "/hook" not in output  # only the URL's hint

    sent = await invoke_cli_async("alert-channel", "test", made["ops"], env=vault_env)
    assert sent.returncode == 0, sent.stderr
    assert "sent" in sent.stdout and "HTTP 200" in sent.stdout
    (request,) = good.requests
    assert verify_signature(SECRET, request.headers["x-mailfleet-signature"], request.body)
    assert (request.json()["event"], request.json()["actor"]) == ("test", ACTOR)

    failed = await invoke_cli_async(
        "alert-channel", "test", made["broken"], "--json", env=vault_env
    )
    assert failed.returncode == 1
    result = json.loads(failed.stdout)
    assert (result["status"], result["last_status_code"], result["attempts"]) == ("failed", 500, 1)
    assert failed.stderr.splitlines() == [
        "error: the test message to broken was not delivered: failed"
    ]
    assert len(bad.requests) == 1
    notification = await client.get(
        f"/api/v1/notifications/{result['notification_id']}", headers=tenant.headers
    )
    assert notification.json()["deliveries"] == [result]  # the delivery log, as the API has it

    missing = str(uuid.uuid4())
    cases = [
        (("alert-channel", "test", missing), f"alert channel {missing} not found"),
        (("alert-channel", "list", "--tenant", "nope-x1"), "--tenant: tenant 'nope-x1' not found"),
    ]
    await all_refused(vault_env, cases)
