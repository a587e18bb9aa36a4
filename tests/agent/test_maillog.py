"""Postfix's log, in its real formats, read into mail counts (``mail.stats``)."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.commands import CommandRunner, handlers_for
from agent.config import ConfigError, load_config
from agent.errors import CommandError
from agent.journal import CommandJournal
from agent.maillog.command import catch_up, counted_before, mail_stats
from agent.maillog.parse import Delivery, Removed, Sender, parse_line
from agent.maillog.reader import Position, new_lines
from agent.maillog.source import UNKNOWN_SOURCE, outbound_source
from agent.maillog.store import KEEP_DAYS, STATE_FILE, load
from agent.network import state as network_state
from agent.network.commands import default_source
from agent.network.ruleset import Desired, Snat
from mailfleet.agent.v1 import agent_pb2

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
TODAY = NOW.date()
IP = "198.18.1.5"
LOGS = Path(__file__).parent / "postfix_logs"

# One afternoon of a MailU smtp container's log (syslog.log): a message to two recipients (one
# sent, one deferred then sent), a bounce, a local delivery (lmtp) and the noise around them.
SYSLOG = (LOGS / "syslog.log").read_text()

RFC3339 = (LOGS / "rfc3339.log").read_text()


BOUNCE = "AbCdE12345: to=<a@b.example>, relay=none, delay=1, dsn=5.0.0, status=bounced (x)"
SENT = "AbCdE12345: to=<b@example.net>, relay=mx[203.0.113.5]:25, dsn=2.0.0, status=sent (250 ok)"
FROM = "AbCdE12345: from=<a@example.com>, size=1, nrcpt=1 (queue active)"


def line(stamp: str, daemon: str, message: str) -> str:
    return f"{stamp} mail postfix/{daemon}[77]: {message}\n"


def write(path: Path, text: str, mode: str = "a") -> None:
    with path.open(mode) as handle:
        handle.write(text)


def rows(state_rows: list[dict[str, str | int]]) -> dict[tuple[str, str], tuple[int, ...]]:
    """(day, sender domain) → (sent, deferred, bounced)."""
    return {
        (str(r["day"]), str(r["sender_domain"])): tuple(
            int(r[k]) for k in ("sent", "deferred", "bounced")
        )
        for r in state_rows
    }


def test_parses_postfix_lines_in_both_timestamp_styles() -> None:
    lines = SYSLOG.splitlines()
    assert parse_line(lines[2], NOW) == Sender("4BqX1x2y3z", "example.com")
    sent = parse_line(lines[3], NOW)
    assert sent == Delivery("4BqX1x2y3z", TODAY, "sent", "mx.example.net[203.0.113.5]:25")
    assert isinstance(parse_line(lines[4], NOW), Delivery)
    assert parse_line(lines[7], NOW) == Removed("4BqX1x2y3z")
    bounce = parse_line(lines[9], NOW)
    assert isinstance(bounce, Delivery) and bounce.status == "bounced"
    for ignored in (lines[0], lines[1], lines[10], lines[12], "garbage", ""):
        assert parse_line(ignored, NOW) is None  # smtpd, cleanup, bounce, lmtp, not syslog
    late = RFC3339.splitlines()
    assert parse_line(late[0], NOW) == Sender("8RsT1u2v3w", "<>")
    # 23:59:59 at UTC-2 is the next day in UTC
    deferred = parse_line(late[3], NOW)
    assert deferred == Delivery("9XyZ1a2b3c", date(2026, 12, 1), "deferred", "none")


def test_traditional_timestamps_take_the_year_that_is_not_in_the_future() -> None:
    bounce = line("Dec 31 23:59:58", "smtp", BOUNCE)
    january = datetime(2027, 1, 1, 0, 5, tzinfo=UTC)
    last_year = Delivery("AbCdE12345", date(2026, 12, 31), "bounced", "none")
    assert parse_line(bounce, january) == last_year
    assert parse_line(line("Dec  3 23:59:58", "smtp", BOUNCE), NOW).day == date(2025, 12, 3)  # type: ignore[union-attr]
    docker = json.dumps({"log": bounce, "stream": "stdout", "time": "2026-12-31T23:59:58Z"})
    assert parse_line(docker, january) == last_year
    expired = "AbCdE12345: from=<a@x.example>, status=expired, returned to sender"
    assert parse_line(line("Nov  3 10:00:00", "qmgr", expired), NOW) == Delivery(
        "AbCdE12345", date(2026, 11, 3), "bounced", "none"
    )


def test_counts_per_day_source_and_sender_domain(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    write(log, SYSLOG + RFC3339)
    state, read = catch_up(tmp_path / "state", log, NOW, IP)
    assert read == len((SYSLOG + RFC3339).splitlines())
    assert rows(state.rows(TODAY)) == {
        ("2026-11-30", "example.com"): (2, 1, 0),  # bob sent; carol deferred, then sent
        ("2026-11-30", "shop.example"): (0, 0, 1),
        ("2026-11-30", "<>"): (1, 0, 0),  # the bounce notice back to shop.example
        ("2026-12-01", "example.com"): (0, 1, 0),
    }
    assert {r["source_ip"] for r in state.rows(TODAY)} == {IP}
    assert "4BqX1x2y3z" not in state.senders  # removed from the queue: forgotten
    # Nothing new: reading again changes nothing.
    again, read = catch_up(tmp_path / "state", log, NOW, IP)
    assert read == 0 and again.rows(TODAY) == state.rows(TODAY)


def test_a_line_split_across_reads_is_read_once_whole(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    lines = SYSLOG.splitlines(keepends=True)
    write(log, "".join(lines[:3]) + lines[3][:40])  # the writer is mid-line
    state, _ = catch_up(tmp_path, log, NOW, IP)
    assert state.rows(TODAY) == []
    write(log, lines[3][40:])
    state, read = catch_up(tmp_path, log, NOW, IP)
    assert read == 1
    assert rows(state.rows(TODAY)) == {("2026-11-30", "example.com"): (1, 0, 0)}


def test_rotation_reads_the_rest_of_the_old_file_then_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    lines = SYSLOG.splitlines(keepends=True)
    write(log, "".join(lines[:4]))
    catch_up(tmp_path, log, NOW, IP)
    write(log, lines[4])  # written after our last read, just before logrotate moved the file
    log.rename(tmp_path / "mail.log.1")
    write(log, "".join(lines[5:7]))
    state, _ = catch_up(tmp_path, log, NOW, IP)
    assert rows(state.rows(TODAY)) == {("2026-11-30", "example.com"): (2, 1, 0)}


def test_truncation_in_place_starts_from_the_top(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    lines = SYSLOG.splitlines(keepends=True)
    write(log, "".join(lines[:8]))
    catch_up(tmp_path, log, NOW, IP)
    write(log, "".join(lines[8:10]), mode="w")  # copytruncate, then new lines
    state, _ = catch_up(tmp_path, log, NOW, IP)
    assert rows(state.rows(TODAY))[("2026-11-30", "shop.example")] == (0, 0, 1)


def test_reader_without_a_log_reads_nothing(tmp_path: Path) -> None:
    position = Position()
    assert list(new_lines(tmp_path / "absent.log", position)) == []
    assert position == Position()


def test_old_days_are_dropped_and_a_corrupt_state_starts_again(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    write(log, line("Oct  1 10:00:00", "smtp", BOUNCE))
    state, _ = catch_up(tmp_path, log, NOW, IP)
    assert (TODAY - date(2026, 10, 1)).days >= KEEP_DAYS and state.counts == {}
    (tmp_path / STATE_FILE).write_text("{not json")
    assert load(tmp_path / STATE_FILE).position == Position()


async def test_mail_stats_command_end_to_end(tmp_path: Path) -> None:
    """Through the agent's command runner, as the control plane's command arrives."""
    root = tmp_path / "vps"
    log = root / "mailu" / "logs" / "mail.log"  # the default path, under the VPS's root
    log.parent.mkdir(parents=True)
    today = datetime.now(UTC).date()
    stamp = f"{today.isoformat()}T10:00:00+00:00"
    write(log, line(stamp, "qmgr", FROM) + line(stamp, "smtp", SENT))
    journal = CommandJournal(tmp_path / "journal")
    sent: list[agent_pb2.AgentMessage] = []
    runner = CommandRunner(journal, sent.append, handlers_for(root))
    try:
        command = agent_pb2.Command(
            id="c1",
            kind="mail.stats",
            payload_json=json.dumps({"since": today.isoformat()}).encode(),
        )
        runner.receive(command)
        await runner.shutdown(5)
    finally:
        journal.close()
    final = sent[-1].command_update
    assert final.state == agent_pb2.COMMAND_STATE_SUCCEEDED, final.error
    result: dict[str, Any] = json.loads(final.result_json)
    assert len(result["days"]) == 1
    day = result["days"][0]
    assert (day["day"], day["sender_domain"], day["sent"]) == (today.isoformat(), "example.com", 1)
    assert day["source_ip"] == result["source_ip"] != ""
    assert result["log"]["found"] and result["log"]["lines_read"] == 2
    assert (root / "var/lib/mailfleet-agent" / STATE_FILE).is_file()
    assert os.stat(root / "var/lib/mailfleet-agent").st_mode & 0o077 == 0


async def test_mail_stats_refuses_a_bad_since(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="since"):
        await mail_stats(
            tmp_path, tmp_path / "mail.log", {"since": "30/11/2026"}, lambda p, m: None
        )


def test_agent_toml_names_the_mail_log(tmp_path: Path) -> None:
    base = (
        '[control_plane]\naddress = "cp.test:8443"\nenroll_address = "cp.test:8444"\n'
        f'ca_pin = "sha256:{"0" * 64}"\n'
    )
    path = tmp_path / "agent.toml"
    path.write_text(base)
    assert load_config(path, tmp_path).mail_log == tmp_path / "mailu/logs/mail.log"
    path.write_text('mail_log = "/var/log/mail.log"\n' + base)
    assert load_config(path, Path("/")).mail_log == Path("/var/log/mail.log")
    path.write_text('mail_log = "relative.log"\n' + base)
    with pytest.raises(ConfigError, match="mail_log"):
        load_config(path)


def test_mail_leaves_from_the_snat_address_when_one_is_set(tmp_path: Path) -> None:
    # no SNAT state: the route's source (unknown on a machine without a route out)
    assert outbound_source(tmp_path) == (default_source() or UNKNOWN_SOURCE)
    desired = Desired(Snat("198.18.7.9", (25,)), None)
    network_state.save(tmp_path / network_state.FILE_NAME, desired)
    assert outbound_source(tmp_path) == "198.18.7.9"
    (tmp_path / network_state.FILE_NAME).write_text("{broken")
    assert outbound_source(tmp_path) == UNKNOWN_SOURCE


async def test_a_source_change_counts_the_log_so_far_for_the_old_address(tmp_path: Path) -> None:
    """``network.snat.set`` runs after the lines written so far are counted (for the address
    in use until then); lines after it count for the new one."""
    log = tmp_path / "mail.log"
    write(log, SYSLOG)
    seen: list[list[dict[str, str | int]]] = []

    async def switch(payload: dict[str, Any], progress: Any) -> dict[str, Any]:
        seen.append(load(tmp_path / STATE_FILE).rows(date.min))  # the real clock's year
        network_state.save(tmp_path / network_state.FILE_NAME, Desired(Snat(payload["to_ip"])))
        return {"to_ip": payload["to_ip"]}

    wrapped = counted_before(tmp_path, log, switch)
    assert await wrapped({"to_ip": "198.18.7.9"}, lambda p, m: None) == {"to_ip": "198.18.7.9"}
    (before,) = seen
    assert sum(int(r["sent"]) for r in before) == 2
    assert {r["source_ip"] for r in before} == {default_source() or UNKNOWN_SOURCE}
    write(log, RFC3339)
    state, _ = catch_up(tmp_path, log, NOW)
    assert {r["source_ip"] for r in state.rows(date.min) if r["sender_domain"] == "<>"} == {
        "198.18.7.9"
    }
    # a log that cannot be read does not hold the switch up
    log.unlink()
    log.mkdir()
    assert await wrapped({"to_ip": "198.18.7.10"}, lambda p, m: None) == {"to_ip": "198.18.7.10"}


def an_agent(tmp_path: Path) -> Any:
    from agent.daemon import Agent

    root = tmp_path / "vps"
    config = tmp_path / "agent.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[control_plane]\naddress = "127.0.0.1:1"\n'
        f'enroll_address = "127.0.0.1:2"\nca_pin = "sha256:{"0" * 64}"\njoin_token = "mfjoin_x"\n'
    )
    return Agent(config, root)


def mail_counts_sent(agent: Any) -> list[agent_pb2.MailCounts]:
    return [m.mail_counts for m in agent.outbox.drain() if m.HasField("mail_counts")]


async def test_the_agent_sends_counts_only_once_a_hello_agreed_to_them(tmp_path: Path) -> None:
    """Capability ``mail_counts``: nothing while the control plane has not agreed (an older
    one), then reports from the next hello that agrees, at its interval."""
    import asyncio

    from agent.link import Link

    agent = an_agent(tmp_path)
    link = Link("127.0.0.1:1", agent.store, agent.spool, agent.outbox, agent.commands,
                agent.intervals)  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(agent._report_mail_counts(stop))
    try:
        link._agree(agent_pb2.HelloReply(capabilities=["metrics"], mail_counts_interval_ms=200))
        agent.connected.set()
        await asyncio.sleep(0.6)
        assert agent.intervals.mail_counts == 0 and mail_counts_sent(agent) == []
        link._agree(agent_pb2.HelloReply(capabilities=["mail_counts"], mail_counts_interval_ms=200))
        await asyncio.sleep(0.7)
        reports = mail_counts_sent(agent)
        assert 2 <= len(reports) <= 4, len(reports)
        assert not reports[0].log_found and list(reports[0].days) == []  # no log: said so
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_the_agent_sends_counts_every_interval_while_connected(tmp_path: Path) -> None:
    import asyncio

    agent = an_agent(tmp_path)
    log = tmp_path / "vps" / "mailu" / "logs" / "mail.log"
    log.parent.mkdir(parents=True)
    today = datetime.now(UTC).date()
    stamp = f"{today.isoformat()}T10:00:00+00:00"
    write(log, line(stamp, "qmgr", FROM) + line(stamp, "smtp", SENT))
    agent.intervals.mail_counts = 0.2
    agent.connected.set()
    stop = asyncio.Event()
    task = asyncio.create_task(agent._report_mail_counts(stop))
    try:
        await asyncio.sleep(1.0)
        reports = mail_counts_sent(agent)
        assert 3 <= len(reports) <= 6, len(reports)  # one per 0.2 s after a random start
        first, later = reports[0], reports[-1]
        assert first.log_found and first.lines_read == 2 and later.lines_read == 0
        (day,) = later.days  # whole-day totals: a later report carries the day again
        assert (day.day, day.sender_domain, day.sent, day.bounced) == (
            today.isoformat(), "example.com", 1, 0)  # fmt: skip
        agent.connected.clear()  # offline: nothing queued for a stream that is not there
        await asyncio.sleep(0.6)
        assert mail_counts_sent(agent) == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
