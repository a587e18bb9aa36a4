"""The counts and the log position, in one file of the agent's state directory.

One file, replaced atomically, so the counts and the position that produced them are never
out of step: a crash between reading and saving re-reads the same lines onto the same old
counts, and nothing is counted twice. Bounded: ``KEEP_DAYS`` days of counts, and at most
``MAX_SENDERS`` queue ids whose sender is remembered (a message normally leaves the queue
within minutes; ids of messages still deferred stay until they are removed or pushed out).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from agent.files import write_atomically
from agent.maillog.parse import UNSEEN_SENDER, Delivery, Event, Removed, Sender
from agent.maillog.reader import Position

log = logging.getLogger(__name__)

STATE_FILE = "mail-counts.json"
KEEP_DAYS = 35
MAX_SENDERS = 100_000
STATUSES = ("sent", "deferred", "bounced")
Counts = dict[str, dict[str, dict[str, list[int]]]]  # day → source ip → domain → [s, d, b]


@dataclass
class MailState:
    position: Position = field(default_factory=Position)
    senders: OrderedDict[str, str] = field(default_factory=OrderedDict)
    counts: Counts = field(default_factory=dict)

    def apply(self, event: Event, source_ip: str) -> None:
        """Fold one log event in; deliveries are counted for ``source_ip``."""
        if isinstance(event, Sender):
            self.senders[event.queue_id] = event.domain
            self.senders.move_to_end(event.queue_id)
            while len(self.senders) > MAX_SENDERS:
                self.senders.popitem(last=False)
        elif isinstance(event, Removed):
            self.senders.pop(event.queue_id, None)
        elif isinstance(event, Delivery):
            domain = self.senders.get(event.queue_id, UNSEEN_SENDER)
            by_ip = self.counts.setdefault(event.day.isoformat(), {}).setdefault(source_ip, {})
            row = by_ip.setdefault(domain, [0, 0, 0])
            row[STATUSES.index(event.status)] += 1

    def prune(self, today: date) -> None:
        oldest = (today - timedelta(days=KEEP_DAYS - 1)).isoformat()
        for day in [day for day in self.counts if day < oldest]:
            del self.counts[day]

    def rows(self, since: date) -> list[dict[str, str | int]]:
        """Whole-day totals of ``since`` and every later day, oldest first."""
        first = since.isoformat()
        return [
            {"day": day, "source_ip": ip, "sender_domain": domain,
             **dict(zip(STATUSES, figures, strict=True))}
            for day in sorted(d for d in self.counts if d >= first)
            for ip, domains in sorted(self.counts[day].items())
            for domain, figures in sorted(domains.items())
        ]  # fmt: skip


def load(path: Path) -> MailState:
    """The saved state; a missing file is a first run, an unreadable one starts afresh (the
    log is read again from its start, which recounts what it still holds)."""
    try:
        data = json.loads(path.read_text())
        return MailState(
            position=Position(data["inode"], int(data["offset"])),
            senders=OrderedDict(data["senders"]),
            counts=data["counts"],
        )
    except FileNotFoundError:
        return MailState()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s is unreadable (%s): counting from the log's start again", path, exc)
        return MailState()


def save(path: Path, state: MailState) -> None:
    data = {
        "inode": state.position.inode,
        "offset": state.position.offset,
        "senders": state.senders,
        "counts": state.counts,
    }
    write_atomically(path, json.dumps(data, separators=(",", ":")))
