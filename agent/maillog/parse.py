"""Postfix's log lines, as syslog (traditional or RFC 3339 timestamps) or Docker's json-file
wraps them, turned into the few events the counts need.

Only outbound deliveries count: ``postfix/smtp`` (not ``lmtp``, ``local``, ``virtual``,
``pipe``: those deliver to mailboxes on this machine). Each ``to=`` line is one recipient's
attempt: ``status=sent``, ``deferred`` (tried again later, so a message may defer several
times) or ``bounced``. The envelope sender comes from the queue manager's ``from=`` line of
the same queue id; a message that expires in the queue after deferrals (``qmgr: ... status=
expired, returned to sender``) counts as bounced, as it never reached its recipient.

Traditional syslog timestamps carry no year and no zone: the year is the one that puts the
line at most a day in the future, and the time is UTC (MailU's containers run with
``TZ=Etc/UTC``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

NULL_SENDER = "<>"  # bounce notices and other mail from the null reverse path
UNSEEN_SENDER = "?"  # the message's from= line was not in the log read (it began earlier)

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_TAG = r"(?P<host>\S+)\s+(?P<tag>[\w.@-]+(?:/[\w.@-]+)*)\[\d+\]:\s+(?P<message>.*)$"
_RFC3339 = re.compile(
    r"^(?P<stamp>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+" + _TAG
)
_SYSLOG = re.compile(
    r"^(?P<month>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<time>\d{2}:\d{2}:\d{2})\s+" + _TAG
)
_QUEUE_ID = r"(?P<qid>[0-9A-Za-z]{5,20})"
_FROM = re.compile(_QUEUE_ID + r": from=<(?P<sender>.*?)>,")
_EXPIRED = re.compile(_QUEUE_ID + r": from=<.*?>, status=expired\b")
_REMOVED = re.compile(_QUEUE_ID + r": removed\s*$")
_TO = re.compile(
    _QUEUE_ID + r": to=<.*?>, (?:orig_to=<.*?>, )?relay=(?P<relay>\S+?),"
    r".*?\bstatus=(?P<status>sent|deferred|bounced)\b"
)


@dataclass(frozen=True)
class Sender:
    """A message entered the active queue with this envelope sender's domain."""

    queue_id: str
    domain: str


@dataclass(frozen=True)
class Delivery:
    """One recipient's outbound attempt ended: ``status`` is sent, deferred or bounced."""

    queue_id: str
    day: date
    status: str
    relay: str  # "mx.example.net[203.0.113.5]:25", or "none" when no connection was made


@dataclass(frozen=True)
class Removed:
    """The message left the queue: its sender need not be remembered any longer."""

    queue_id: str


Event = Sender | Delivery | Removed


def sender_domain(address: str) -> str:
    if not address:
        return NULL_SENDER
    _, at, domain = address.rpartition("@")
    return domain.lower().rstrip(".") if at and domain else UNSEEN_SENDER


def _moment(found: re.Match[str], now: datetime) -> datetime | None:
    stamp = found.groupdict().get("stamp")
    if stamp is not None:
        try:
            moment = datetime.fromisoformat(stamp)
        except ValueError:
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    month = _MONTHS.get(found["month"])
    if month is None:
        return None
    hour, minute, second = (int(part) for part in found["time"].split(":"))
    for year in (now.year + 1, now.year, now.year - 1):
        try:
            moment = datetime(year, month, int(found["day"]), hour, minute, second, tzinfo=UTC)
        except ValueError:  # 29 February of a year that has none
            continue
        if moment <= now + timedelta(days=1):
            return moment
    return None


def unwrap(line: str) -> str:
    """The log line itself, also when Docker's json-file driver wrapped it."""
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            return line
        if isinstance(record, dict) and isinstance(record.get("log"), str):
            return str(record["log"]).rstrip("\n")
    return line


def parse_line(line: str, now: datetime) -> Event | None:
    """The event ``line`` records, or None for everything else (other programs, other
    Postfix daemons, lines that are not syslog lines)."""
    line = unwrap(line)
    found = _RFC3339.match(line) or _SYSLOG.match(line)
    if found is None:
        return None
    program, _, daemon = found["tag"].rpartition("/")
    if not program.startswith("postfix"):
        return None
    message = found["message"]
    if daemon == "qmgr":
        if (expired := _EXPIRED.match(message)) is not None:
            moment = _moment(found, now)
            if moment is None:
                return None
            return Delivery(expired["qid"], moment.date(), "bounced", "none")
        if (sender := _FROM.match(message)) is not None:
            return Sender(sender["qid"], sender_domain(sender["sender"]))
        if (removed := _REMOVED.match(message)) is not None:
            return Removed(removed["qid"])
        return None
    if daemon != "smtp":
        return None
    delivery = _TO.match(message)
    if delivery is None:
        return None
    moment = _moment(found, now)
    if moment is None:
        return None
    return Delivery(delivery["qid"], moment.date(), delivery["status"], delivery["relay"])
