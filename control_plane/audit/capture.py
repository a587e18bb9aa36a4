"""Writing a request's (or CLI command's) record inside the transaction that makes its change.

A session carries the ``Pending`` record in ``Session.info`` (API requests, see
``RequestContext.session``); in the CLI, whose commands work on the database directly, the
running command is the record (found through click's current context, so every command is
covered whichever helper opens its sessions; ``serve`` is the control plane, not a change).
The first transaction that writes a row adds the record just before it commits: the change
and its record are one commit, so neither exists without the other. The object a create
makes and, for admin keys and the CLI, the tenant it concerns are read from the rows written.
"""

from __future__ import annotations

import contextlib
import importlib
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from control_plane.audit.models import AuditEvent
from control_plane.audit.service import PENDING_KEY, Pending, cli_pending, new_event, singular


def _context_getter() -> Callable[..., Any]:
    """click's ``get_current_context``; Typer 0.2x runs its own copy of click."""
    for module in ("typer._click.globals", "click.globals"):
        with contextlib.suppress(ImportError):
            getter: Callable[..., Any] = importlib.import_module(module).get_current_context
            return getter
    return lambda silent: None


get_current_context = _context_getter()

_WRITTEN_KEY = "audit_written"  # rows flushed in this transaction, in order
_CHANGED_KEY = "audit_changed"  # a bulk INSERT/UPDATE/DELETE ran (no rows to look at)
_ADDED_KEY = "audit_added"  # the Pending whose record this commit carries
_CLI_KEY = "mailfleet.audit"  # click Context.meta: the running command's record
SERVE_COMMAND = "serve"


def _cli_command() -> Pending | None:
    context = get_current_context(silent=True)
    if context is None or context.info_name == SERVE_COMMAND:
        return None
    pending = context.meta.get(_CLI_KEY)
    if not isinstance(pending, Pending):
        pending = context.meta[_CLI_KEY] = cli_pending(context.command_path, dict(context.params))
    return pending


def name_cli_object(object_type: str, object_id: uuid.UUID) -> None:
    """The running CLI command acts on this object, which it was given by name (its
    arguments do not show the id); outside a CLI command, nothing."""
    pending = _cli_command()
    if pending is not None and not pending.written:
        pending.object_type, pending.object_id, pending.creates = object_type, object_id, None


def pending_of(session: Session) -> Pending | None:
    pending = session.info.get(PENDING_KEY)
    if isinstance(pending, Pending):
        return pending
    return _cli_command()


@event.listens_for(Session, "after_flush")
def _note_rows(session: Session, _flush_context: Any) -> None:
    if pending_of(session) is None:
        return
    written: list[Any] = session.info.setdefault(_WRITTEN_KEY, [])
    written.extend(
        row
        for row in (*session.new, *session.dirty, *session.deleted)
        if not isinstance(row, AuditEvent)
    )


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_writes(state: ORMExecuteState) -> None:
    if (state.is_insert or state.is_update or state.is_delete) and pending_of(state.session):
        state.session.info[_CHANGED_KEY] = True


def _table_of(row: Any) -> str:
    return str(getattr(type(row), "__tablename__", ""))


def _resolve(
    pending: Pending, written: list[Any]
) -> tuple[str | None, uuid.UUID | None, uuid.UUID | None]:
    """The object (a create's new row if one matches) and the one tenant the rows belong to."""
    object_type, object_id = pending.object_type, pending.object_id
    if pending.creates:
        ending = pending.creates
        for row in written:
            table = _table_of(row)
            if table == ending or table.endswith("_" + ending):
                object_type, object_id = singular(ending), row.id
                break
    tenants = {getattr(row, "tenant_id", None) for row in written} - {None}
    return object_type, object_id, tenants.pop() if len(tenants) == 1 else None


@event.listens_for(Session, "before_commit")
def _add_record(session: Session) -> None:
    pending = pending_of(session)
    if pending is None or pending.written:
        return
    if session.new or session.dirty or session.deleted:
        session.flush()  # ids of new rows, and every row written noted by _note_rows
    written: list[Any] = session.info.pop(_WRITTEN_KEY, [])
    if not (session.info.pop(_CHANGED_KEY, False) or written):
        return
    session.info[_ADDED_KEY] = pending
    if pending.claimed:  # audit.service.record wrote it already
        return
    object_type, object_id, tenant_id = _resolve(pending, written)
    session.add(
        new_event(
            pending.actor,
            pending.action,
            object_type,
            object_id,
            tenant_id=tenant_id,
            request=pending.request,
            status=pending.status,
        )
    )


@event.listens_for(Session, "after_commit")
def _mark_written(session: Session) -> None:
    session.info.pop(_WRITTEN_KEY, None)  # the record's own flush noted rows again
    pending = session.info.pop(_ADDED_KEY, None)
    if isinstance(pending, Pending):
        pending.written = True


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    for key in (_WRITTEN_KEY, _CHANGED_KEY, _ADDED_KEY):
        session.info.pop(key, None)
    pending = session.info.get(PENDING_KEY)
    if isinstance(pending, Pending):
        pending.claimed = False
