"""``mail.stats``: read what Postfix's log gained, then answer the counts since a day.

Payload ``{"since": "YYYY-MM-DD"}`` (optional: every day kept). Result ``{"days": [{"day",
"source_ip", "sender_domain", "sent", "deferred", "bounced"}, ...], "log": {"path", "found",
"lines_read"}, "source_ip": ...}`` — whole-day totals, so the control plane replaces each day
it receives and a repeated answer changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from agent.errors import CommandError
from agent.maillog.parse import parse_line
from agent.maillog.reader import new_lines
from agent.maillog.source import outbound_source
from agent.maillog.store import STATE_FILE, MailState, load, save

log = logging.getLogger(__name__)
Progress = Callable[[int, str], None]
Handler = Callable[[dict[str, Any], Progress], Awaitable[dict[str, Any]]]
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def parse_since(payload: dict[str, Any]) -> date | None:
    since = payload.get("since")
    if since is None:
        return None
    if not isinstance(since, str) or len(since) != 10:
        return None
    try:
        return date.fromisoformat(since)
    except ValueError:
        return None


def catch_up(
    state_dir: Path, mail_log: Path, now: datetime, source: str | None = None
) -> tuple[MailState, int]:
    """Fold the log's new lines into the saved counts (under a lock: one reader at a time)
    and save them; the state and how many lines were read."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / STATE_FILE
    with _lock(path):
        state = load(path)
        source_ip = source or outbound_source(state_dir)
        read = 0
        for line in new_lines(mail_log, state.position):
            read += 1
            event = parse_line(line, now)
            if event is not None:
                state.apply(event, source_ip)
        state.prune(now.date())
        save(path, state)
        return state, read


def counts_since(
    state_dir: Path, mail_log: Path, since: date | None, now: datetime
) -> dict[str, Any]:
    """The log's new lines counted, then whole-day totals from ``since`` on: what both the
    ``mail.stats`` answer and the report the agent sends on its own carry (blocking: run it
    off the event loop)."""
    source = outbound_source(state_dir)
    state, read = catch_up(state_dir, mail_log, now, source)
    return {
        "days": state.rows(since or date.min),
        "log": {"path": str(mail_log), "found": mail_log.is_file(), "lines_read": read},
        "source_ip": source,
    }


async def mail_stats(
    state_dir: Path, mail_log: Path, payload: dict[str, Any], progress: Progress
) -> dict[str, Any]:
    since = parse_since(payload)
    if "since" in payload and since is None:
        raise CommandError("since: expected a date YYYY-MM-DD")
    return await asyncio.to_thread(counts_since, state_dir, mail_log, since, datetime.now(UTC))


def counted_before(state_dir: Path, mail_log: Path, change_source: Handler) -> Handler:
    """``change_source`` (``network.snat.set``), after the log's lines so far are counted for
    the address they left from: mail sent before a switch stays with the old address.
    Counting never holds up the switch: a failure to read is logged, and the lines are
    counted at the next read (for the new address)."""

    async def run(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        try:
            await asyncio.to_thread(catch_up, state_dir, mail_log, datetime.now(UTC))
        except OSError as exc:
            log.warning("mail counts not brought up to date before the SNAT change: %s", exc)
        return await change_source(payload, progress)

    return run
