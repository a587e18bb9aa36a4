"""``mailfleet alert-channel list|test``: the API's channel listing, and its test message
(``alerts.service.send_test``) with the delivery's result.

Loaded by ``control_plane.cli``, whose helpers it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from control_plane.cli import (
    JsonOption,
    fail,
    parse_uuid,
    print_json,
    print_table,
    run_async,
    settings,
    with_database,
)
from control_plane.cli_common import cli_actor, find_tenant, moment

if TYPE_CHECKING:  # the services come with the commands (this module loads for every run)
    from control_plane.alerts.schemas import ChannelOut, DeliveryOut
    from control_plane.db.engine import Database

channel_app = typer.Typer(help="Alert channels.", no_args_is_help=True)
DELIVERED = ("sent", "quiet")


@channel_app.command("list")
def channel_list(
    tenant: Annotated[str | None, typer.Option("--tenant", help="A tenant's id or name.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Alert channels (a tenant's, or every one; `fleet` ones are an admin's), without
    their secrets."""
    from control_plane.alerts import channels

    async def load(db: Database) -> list[ChannelOut]:
        async with db.session() as session:
            tenant_id = None
            if tenant is not None:
                tenant_id = (await find_tenant(session, tenant, field="tenant_id")).id
            return [
                channels.channel_out(c) for c in await channels.list_channels(session, tenant_id)
            ]

    found = run_async(with_database(load))
    if as_json:
        return print_json(found)
    rows = [
        (str(c.id), str(c.tenant_id or "fleet"), c.name, c.kind, _target(c), _quiet(c))
        for c in found
    ]
    print_table(("id", "tenant", "name", "kind", "target", "quiet hours"), rows)


@channel_app.command("test")
def channel_test(
    channel_id: Annotated[str, typer.Argument(metavar="ID", help="The channel's id.")],
    as_json: JsonOption = False,
) -> None:
    """Send a test message now (quiet hours do not apply) and print how it went; exit 1 if
    it was not delivered (a running `mailfleet serve` retries it)."""
    from control_plane.alerts.service import send_test
    from control_plane.vault.connect import running_vault

    ident = parse_uuid(channel_id, "ID")
    loaded = settings()

    async def send(db: Database) -> DeliveryOut:
        vault = running_vault(loaded)
        try:
            return await send_test(db.session, db, vault, loaded, ident, cli_actor())
        finally:
            vault.close()

    result = run_async(with_database(send))
    if as_json:
        print_json(result)
    else:
        code = f"HTTP {result.last_status_code}" if result.last_status_code else "-"
        print_table(
            ("channel", "kind", "status", "attempts", "answer", "error", "delivered"),
            [
                (result.channel_name, result.kind, result.status, str(result.attempts), code,
                 result.last_error or "-", moment(result.delivered_at))
            ],
        )  # fmt: skip
    if result.status not in DELIVERED:
        raise fail(f"the test message to {result.channel_name} was not delivered: {result.status}")


def _target(channel: ChannelOut) -> str:
    if channel.to:
        return ", ".join(channel.to)
    return channel.url_hint or channel.routing_key_hint or "-"


def _quiet(channel: ChannelOut) -> str:
    quiet = channel.quiet_hours
    if quiet is None:
        return "-"
    passes = ", critical passes" if quiet.critical_passes else ""
    return f"{quiet.start}-{quiet.end} {quiet.time_zone}{passes}"
