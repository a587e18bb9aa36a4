"""``mailfleet ip-switch start|list|show``: the IP switch routes' service functions, on the
database (admin: every tenant's servers). ``serve``'s runner carries the switch out; these
commands start one and read it back. Loaded by ``control_plane.cli``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from control_plane.cli import (
    JsonOption,
    cell_text,
    invalid,
    parse_uuid,
    print_json,
    print_table,
    run_async,
    settings,
    with_database,
)
from control_plane.cli_common import cli_actor, every_page, find_server, moment
from control_plane.errors import InvalidInput

if TYPE_CHECKING:  # the service comes with the commands (this module loads for every run)
    from control_plane.db.engine import Database
    from control_plane.ipswitch.schemas import IpSwitchOut

switch_app = typer.Typer(
    help="IP switches: move a server's outbound mail to another of its addresses.",
    no_args_is_help=True,
)
Server = Annotated[str, typer.Argument(metavar="SERVER", help="The server's id or name.")]
FLAGS = {"body.to_ip": "--to", "body.auto": "--auto"}
PAGE = 500


def _show(found: IpSwitchOut, as_json: bool) -> None:
    if as_json:
        return print_json(found)
    fields = found.model_dump(mode="json", exclude={"steps"})
    print_table(("field", "value"), [(k, cell_text(v)) for k, v in fields.items()])
    print_table(
        ("step", "state", "started", "finished", "detail"),
        [(s.name, s.state, moment(s.started_at), moment(s.finished_at), s.detail or "-")
         for s in found.steps],
    )  # fmt: skip


@switch_app.command("start")
def switch_start(
    server: Server,
    to: Annotated[str | None, typer.Option("--to", help="The address to send from next.")] = None,
    auto: Annotated[
        bool, typer.Option("--auto", help="The best clean standby address past its warmup.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Start a switch (it runs in `mailfleet serve`; follow it with `show`)."""
    from control_plane.ipswitch import service
    from control_plane.ipswitch.schemas import IpSwitchIn

    loaded = settings()
    try:
        data = IpSwitchIn(to_ip=to, auto=auto)
    except ValidationError as exc:
        raise invalid(exc) from None

    async def start(db: Database) -> IpSwitchOut:
        async with db.session() as session:
            found = await find_server(session, server)
            try:
                switch = await service.request_switch(session, loaded, found, data, cli_actor())
            except InvalidInput as exc:
                flag = FLAGS.get(exc.field or "", exc.field)
                raise InvalidInput(f"{flag}: {exc.detail}") from None
            return await service.switch_out(session, switch)

    _show(run_async(with_database(start)), as_json)


@switch_app.command("list")
def switch_list(server: Server, as_json: JsonOption = False) -> None:
    """The server's switches, oldest first."""
    from control_plane.ipswitch import service

    async def load(db: Database) -> list[IpSwitchOut]:
        async with db.session() as session:
            found = await find_server(session, server)
            switches = await every_page(
                lambda after: service.list_switches(session, found.id, after, PAGE)
            )
            return [await service.switch_out(session, switch) for switch in switches]

    found = run_async(with_database(load))
    if as_json:
        return print_json(found)
    print_table(
        ("id", "state", "from", "to", "requested", "by", "error"),
        [(str(s.id), s.state, s.from_ip, s.to_ip, moment(s.created_at), s.requested_by or "-",
          s.error or "-") for s in found],
    )  # fmt: skip


@switch_app.command("show")
def switch_show(
    server: Server,
    switch: Annotated[str, typer.Argument(metavar="SWITCH", help="The switch's id.")],
    as_json: JsonOption = False,
) -> None:
    """One switch with its steps."""
    from control_plane.ipswitch import service

    switch_id = parse_uuid(switch, "SWITCH")

    async def load(db: Database) -> IpSwitchOut:
        async with db.session() as session:
            found = await find_server(session, server)
            return await service.switch_out(
                session, await service.get_switch(session, found.id, switch_id)
            )

    _show(run_async(with_database(load)), as_json)
