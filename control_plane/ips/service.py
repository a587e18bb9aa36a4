"""The IP inventory: rows per assigned address, their history, and the limits the agent
enforces for them (``network.limits.set``).

Every function works in the caller's transaction. Actors: a key's name for users, ``auto``
for automatic actions, ``control-plane`` for workflow steps.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Collection, Sequence
from datetime import date, datetime

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.commands import handlers
from control_plane.commands import service as commands
from control_plane.commands.models import Command
from control_plane.costs import meter
from control_plane.db.base import new_id
from control_plane.errors import InvalidInput, NotFound
from control_plane.incidents import service as incidents
from control_plane.incidents.signals import Signal
from control_plane.ips import warmup
from control_plane.ips.models import ROLES, IpAddress, IpEvent
from control_plane.mailstats.service import sent_today
from control_plane.servers.models import Server

AUTO = "auto"
CONTROL_PLANE = "control-plane"
LIMITS_KIND = "network.limits.set"
LIMITS_RUN_SECONDS = 30.0
PAUSED_CHECK = "ip.paused"

today_cap = warmup.today_cap  # the contract's name; the plans live in warmup.py


def canonical(address: str, field: str = "ip") -> str:
    """The address as stored (``198.18.0.5``), or 422 naming ``field`` for anything else."""
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        raise InvalidInput(f"not an IP address: {address!r}", field=field) from None
    return str(parsed)


async def live_ips(session: AsyncSession, server_id: uuid.UUID) -> list[IpAddress]:
    """The server's live addresses, main first (then in the order they were assigned)."""
    rows = await session.scalars(
        select(IpAddress)
        .where(IpAddress.server_id == server_id, IpAddress.released_at.is_(None))
        .order_by(IpAddress.is_main.desc(), IpAddress.assigned_at, IpAddress.address)
    )
    return list(rows)


async def sending_ip(session: AsyncSession, server_id: uuid.UUID) -> IpAddress | None:
    return await session.scalar(
        select(IpAddress)
        .where(
            IpAddress.server_id == server_id,
            IpAddress.released_at.is_(None),
            IpAddress.role == "sending",
        )
        .order_by(IpAddress.assigned_at)
        .limit(1)
    )


async def sending_ips(
    session: AsyncSession, server_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Each server's sending address, as ``sending_ip`` picks it, for many servers at once
    (a page of the fleet)."""
    rows = await session.execute(
        select(IpAddress.server_id, IpAddress.address)
        .where(
            IpAddress.server_id.in_(server_ids),
            IpAddress.released_at.is_(None),
            IpAddress.role == "sending",
        )
        .order_by(IpAddress.assigned_at)
    )
    found: dict[uuid.UUID, str] = {}
    for server_id, address in rows:
        found.setdefault(server_id, address)
    return found


async def published_addresses(session: AsyncSession, server: Server) -> tuple[str, ...]:
    """What DNS publishes for the server (A + SPF ``ip4:``): live rows with
    ``dns_published``, the sending one first; ``(server.ipv4,)`` before it has rows."""
    rows = await live_ips(session, server.id)
    if not rows:
        return (server.ipv4,) if server.ipv4 else ()
    published = [ip for ip in rows if ip.dns_published]
    published.sort(key=lambda ip: ip.role != "sending")
    return tuple(ip.address for ip in published)


async def get_live(session: AsyncSession, address: str, field: str = "path.ip") -> IpAddress:
    """The live row of ``address`` (tenant-scoped sessions see only their own: 404); 422
    naming ``field`` when it is no IP address at all."""
    wanted = canonical(address, field)
    row = await session.scalar(
        select(IpAddress).where(IpAddress.address == wanted, IpAddress.released_at.is_(None))
    )
    if row is None:
        raise NotFound("IP address", address)
    return row


async def record_event(
    session: AsyncSession,
    ip: IpAddress,
    kind: str,
    detail: str,
    actor: str | None,
    now: datetime,
) -> None:
    session.add(
        IpEvent(
            id=new_id(),
            tenant_id=ip.tenant_id,
            ip_id=ip.id,
            at=now,
            kind=kind,
            detail=detail,
            actor=actor,
        )
    )


async def events(session: AsyncSession, ip: IpAddress, limit: int = 200) -> list[IpEvent]:
    """The row's history, newest first."""
    rows = await session.scalars(
        select(IpEvent)
        .where(IpEvent.ip_id == ip.id)
        .order_by(IpEvent.at.desc(), IpEvent.id.desc())
        .limit(limit)
    )
    return list(rows)


async def sync_server(
    session: AsyncSession, server: Server, addresses: Sequence[str], now: datetime
) -> list[IpAddress]:
    """Make the live rows match the provider's list (first = main).

    A new address gets a row (standby; the main one becomes the sending, published address
    when the server has none), an address gone is released. An address still live on
    another server's row (the provider moved it) ends that row first: the new assignment
    starts its own history. Returns the live rows, main first. Each assignment and release
    opens or ends the address's metering span (``costs.meter``) in the same transaction.
    """
    wanted: list[str] = []
    for address in addresses:
        value = canonical(address, field="addresses")
        if ":" not in value and value not in wanted:  # IPv4 only: providers list v6 too
            wanted.append(value)
    rows = {ip.address: ip for ip in await live_ips(session, server.id)}
    for address, gone in rows.items():
        if address not in wanted:
            gone.released_at = now
            await meter.close_spans(session, server.id, "ip", now, item=address)
            await record_event(
                session, gone, "released", "no longer on the server", CONTROL_PLANE, now
            )
    for index, address in enumerate(wanted):
        found = rows.get(address)
        if found is not None:
            found.is_main = index == 0
        else:
            await _release_elsewhere(session, server, address, now)
            ip = IpAddress(
                id=new_id(),
                tenant_id=server.tenant_id,
                server_id=server.id,
                address=address,
                provider=server.provider,
                is_main=index == 0,
                role="standby",
                dns_published=False,
                assigned_at=now,
            )
            session.add(ip)
            rows[address] = ip
            if meter.metered(server):  # every address, the main one too: rating counts them
                await meter.open_span(session, server, "ip", address, now)
            what = "main address" if index == 0 else "extra address"
            await record_event(
                session, ip, "assigned", f"{what} of {server.name}", CONTROL_PLANE, now
            )
    await session.flush()
    live = [rows[a] for a in wanted]
    if live and not any(ip.role == "sending" for ip in live):
        main = live[0]
        if main.role != "retired":
            main.role, main.dns_published = "sending", True
            await record_event(
                session, main, "role", "sending (the server's main address)", CONTROL_PLANE, now
            )
    await session.flush()
    return live


async def _release_elsewhere(
    session: AsyncSession, server: Server, address: str, now: datetime
) -> None:
    other = await session.scalar(
        select(IpAddress).where(
            IpAddress.address == address,
            IpAddress.released_at.is_(None),
            IpAddress.server_id != server.id,
        )
    )
    if other is not None:
        other.released_at = now
        await meter.close_spans(session, other.server_id, "ip", now, item=address)
        await record_event(
            session,
            other,
            "released",
            "the provider moved it to another server",
            CONTROL_PLANE,
            now,
        )
        await session.flush()


async def pause(
    session: AsyncSession, ip: IpAddress, reason: str, actor: str, now: datetime
) -> bool:
    """Hold sending from ``ip`` (False: it already was). Queues the limits push; an
    automatic pause also raises the ``ip.paused`` incident check."""
    if ip.paused_at is not None:
        return False
    ip.paused_at, ip.paused_reason, ip.paused_by = now, reason, actor
    await record_event(session, ip, "paused", reason, actor, now)
    if actor == AUTO:
        await _signal(session, ip, "failing", f"sending from {ip.address} paused: {reason}", now)
    await push_for(session, ip, now)
    return True


async def resume(session: AsyncSession, ip: IpAddress, actor: str, now: datetime) -> bool:
    """Let ``ip`` send again (False: it was not paused); resolves ``ip.paused``."""
    if ip.paused_at is None:
        return False
    was = ip.paused_reason or ""
    ip.paused_at, ip.paused_reason, ip.paused_by = None, None, None
    await record_event(session, ip, "resumed", f"was paused: {was}" if was else "", actor, now)
    await _signal(session, ip, "ok", f"sending from {ip.address} resumed by {actor}", now)
    await push_for(session, ip, now)
    return True


async def _signal(
    session: AsyncSession, ip: IpAddress, state: str, summary: str, now: datetime
) -> None:
    signal = Signal(
        tenant_id=ip.tenant_id,
        subject_kind="ip",
        subject_id=ip.address,
        check=PAUSED_CHECK,
        state="failing" if state == "failing" else "ok",
        severity="warning",
        summary=summary,
        server_id=ip.server_id,
    )
    await incidents.observe(session, [signal], now)


async def push_for(session: AsyncSession, ip: IpAddress, now: datetime) -> None:
    """``push_limits`` for the address's server."""
    server = await session.get(Server, ip.server_id)
    if server is not None:
        await push_limits(session, server, now)


async def set_role(
    session: AsyncSession, ip: IpAddress, role: str, actor: str, now: datetime
) -> None:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="body.role")
    if ip.role == role:
        return
    before, ip.role = ip.role, role
    await record_event(session, ip, "role", f"{before} → {role}", actor, now)
    await session.flush()


async def set_dns_published(
    session: AsyncSession, ip: IpAddress, published: bool, actor: str, now: datetime
) -> None:
    if ip.dns_published == published:
        return
    ip.dns_published = published
    what = "published in DNS (A, SPF)" if published else "withdrawn from DNS (A, SPF)"
    await record_event(session, ip, "dns", what, actor, now)
    await session.flush()


async def set_ptr(
    session: AsyncSession, ip: IpAddress, ptr: str | None, actor: str, now: datetime
) -> None:
    if ip.ptr == ptr:
        return
    ip.ptr = ptr
    await record_event(session, ip, "ptr", f"PTR → {ptr}" if ptr else "PTR cleared", actor, now)
    await session.flush()


async def set_listing(
    session: AsyncSession, ip: IpAddress, listing: str, score: int | None, now: datetime
) -> None:
    """The DNSBL verdict (listed/clean/unknown) and score; an event when the verdict changes."""
    before = ip.listing
    ip.listing, ip.score, ip.listing_checked_at = listing, score, now
    if before != listing:
        score_text = f" (score {score})" if score is not None else ""
        await record_event(
            session, ip, "listing", f"{before or 'unchecked'} → {listing}{score_text}", AUTO, now
        )
    # No flush here: a sweep sets many addresses in one batch, flushed together (the next
    # query autoflushes them, the commit at the latest).


def hold_reason(ip: IpAddress, cap: int | None, sent: int) -> str:
    """Why sending from ``ip`` is held now ("" = it is not): paused, or today's cap reached."""
    if ip.paused_at is not None:
        return ip.paused_reason or "paused"
    if cap is not None and sent >= cap:
        return f"daily cap reached ({sent}/{cap})"
    return ""


async def limits_payload(session: AsyncSession, server: Server, day: date) -> dict[str, object]:
    """The whole desired state for the agent: each live address's cap and pause for ``day``."""
    limits: dict[str, dict[str, object]] = {}
    for ip in await live_ips(session, server.id):
        cap = today_cap(ip, day)
        sent = await sent_today(session, ip, day) if cap is not None else 0
        reason = hold_reason(ip, cap, sent)
        limits[ip.address] = {"cap": cap, "paused": bool(reason), "reason": reason}
    return {"day": day.isoformat(), "limits": limits}


async def push_limits(session: AsyncSession, server: Server, now: datetime) -> None:
    """Queue ``network.limits.set`` with the server's whole state for ``now``'s UTC day.

    The payload is the whole desired state, so a push still waiting in the queue is
    superseded: the same payload waiting already is kept (nothing new is queued), an older
    one is cancelled before it is ever sent. Delivery wakes after the commit."""
    payload = await limits_payload(session, server, now.date())
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    waiting = list(
        await session.scalars(
            select(Command)
            .where(
                Command.server_id == server.id,
                Command.kind == LIMITS_KIND,
                Command.state == "queued",
            )
            .order_by(Command.created_at, Command.id)
        )
    )
    if waiting and waiting[-1].payload == text:
        return
    for stale in waiting:
        await commands.request_cancel(session, stale)
    await commands.queue_system_command(session, server, LIMITS_KIND, payload, LIMITS_RUN_SECONDS)
    wake_after_commit(session, server.id)


def wake_after_commit(session: AsyncSession, server_id: uuid.UUID) -> None:
    event.listen(
        session.sync_session, "after_commit", lambda _s: handlers.wake(server_id), once=True
    )
