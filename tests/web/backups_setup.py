"""A real agent for the console's backup tests: ``mailfleet-agent run`` enrolled for one
server through the console server's gateway, its filesystem rooted in a temp directory (a
few maildir messages under ``/mailu``), backing up with real restic to a local repository
that the server's backup policy names."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from control_plane.backups import service as backups
from control_plane.backups.models import BackupSnapshot
from control_plane.backups.schemas import PolicyIn
from control_plane.db.base import utcnow
from control_plane.enrollment.agent_config import issue_join_config
from control_plane.servers.service import get_server
from control_plane.tls.models import Certificate
from control_plane.vault.client import server_secret_path
from tests.support.processes import spawn
from tests.web.console import ConsoleServer

MAILBOX = "sales@shop.example"


def mail_root(root: Path) -> Path:
    """A MailU data root with one mailbox of 20 messages (what a backup reads); its inbox."""
    inbox = root / "mailu" / "mail" / MAILBOX / "cur"
    inbox.mkdir(parents=True)
    for n in range(20):
        (inbox / f"{n}.eml").write_text(f"Subject: {n}\n\nbody {n}\n")
    return inbox


def set_policy(console: ConsoleServer, server_id: uuid.UUID, repository: Path) -> None:
    """The server's backup policy, through the service the API's PUT uses."""

    async def put() -> None:
        await console.app.state.vault.ensure_kv_mount()
        async with console.db.session() as session:
            server = await get_server(session, server_id)
            data = PolicyIn(repository_url=str(repository))
            await backups.put_policy(session, console.app.state.vault, server, data)

    console.run(put())


def agent_toml(console: ConsoleServer, server_id: uuid.UUID) -> str:
    gateway = console.gateway()

    async def issue() -> str:
        async with console.db.session() as session:
            server = await get_server(session, server_id)
            link, enroll = gateway.listen[0]
            issued = await issue_join_config(
                session, console.app.state.pki, console.settings, server, (link, enroll)
            )
            return issued.agent_toml

    return console.run(issue())


@contextmanager
def running_agent(console: ConsoleServer, server_id: uuid.UUID, tmp: Path) -> Iterator[Path]:
    """The agent, connected (its stream registered with the gateway) before this yields
    the inbox it backs up."""
    root = tmp / "rootfs"
    inbox = mail_root(root)
    config = tmp / "agent.toml"
    tuning = "backoff_initial_seconds = 0.2\nbackoff_max_seconds = 1.0\n"
    toml = agent_toml(console, server_id)
    config.write_text(f'state_dir = "/var/lib/mailfleet-agent"\n{toml}\n[agent]\n{tuning}')
    agent = spawn("mailfleet-agent", "run", "--config", str(config), "--root", str(root), env={})
    try:
        hub = console.app.state.hub
        deadline = time.monotonic() + 30
        while hub.get(server_id) is None:
            if agent.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the agent did not connect:\n" + "\n".join(agent.output()))
            time.sleep(0.05)
        yield inbox
    finally:
        agent.stop()
        print("\n".join(agent.output()[-40:]))  # shown by pytest when the test failed


def snapshots(
    console: ConsoleServer, tenant_id: uuid.UUID, server_id: uuid.UUID, count: int
) -> None:
    """``count`` snapshot rows, an hour apart up to now, as a repository listing would leave
    them (for the table's pages: no agent needed)."""
    now = utcnow()

    async def add() -> None:
        async with console.db.tenant_session(tenant_id) as session:
            for n in range(count):
                session.add(
                    BackupSnapshot(
                        tenant_id=tenant_id, server_id=server_id, short_id=f"{n:08x}",
                        taken_at=now - timedelta(hours=count - n), root="/", paths="/mailu",
                        data_added=1000 * n, bytes_processed=5000 * n, files=10 + n,
                        duration_seconds=1.0, offsite_copied=False,
                    )
                )  # fmt: skip

    console.run(add())


def certificate(
    console: ConsoleServer, tenant_id: uuid.UUID, server_id: uuid.UUID, names: list[str]
) -> str:
    """A certificate for ``names`` signed by a CA of its own (expiring in 20 days: due for
    renewal), kept where issuance keeps one (Vault) with its row; the CA's name."""
    ca_name = "MailFleet Test Issuing CA"
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=70))
        .not_valid_after(now + timedelta(days=20))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = leaf.public_bytes(serialization.Encoding.PEM).decode()

    async def store() -> None:
        await console.app.state.vault.ensure_kv_mount()
        path = server_secret_path(tenant_id, server_id, "tls")
        await console.app.state.vault.put(path, {"cert_pem": pem, "key_pem": "(unused)"})
        async with console.db.tenant_session(tenant_id) as session:
            session.add(
                Certificate(
                    tenant_id=tenant_id, server_id=server_id, names="\n".join(names),
                    serial=format(leaf.serial_number, "x"), issued_at=now - timedelta(days=70),
                    not_after=leaf.not_valid_after_utc,
                )
            )  # fmt: skip

    console.run(store())
    return ca_name
