"""The README's Quick start, run as written: `make run` with the default relative home, then
the second shell's lines until a local server is ready, reports metrics and is deleted
without a trace, then a second start. (`benchmarks/first_run.py` times the same walk from a
fresh clone; this test is its smoke run.)"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.first_run import one_start
from tests.e2e.test_serve import live_admin_keys
from tests.support.netns import netns_unavailable
from tests.support.quickstart import Walk, admin_key_line, prepare_checkout

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def json_at(output: str, start: str) -> dict[str, Any]:
    """The JSON object that begins where ``start`` first occurs in ``output``."""
    index = output.find(start)
    assert index >= 0, f"no {start} in {output[:2000]}"
    value, _ = json.JSONDecoder().raw_decode(output, index)
    assert isinstance(value, dict)
    return value


def assigned(trace: str, name: str) -> str:
    """The value bash -x shows assigned to ``name``."""
    for line in trace.splitlines():
        if line.startswith(f"+ {name}="):
            return line.split("=", 1)[1].strip("'")
    raise AssertionError(f"{name} was never assigned:\n{trace[-3000:]}")


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)
    checkout = tmp_path / "mailfleet"
    prepare_checkout(checkout, reuse_venv=True)
    config = tmp_path / "config"
    config.mkdir()
    walk = Walk(checkout, config)
    try:
        yield walk
    finally:
        walk.sweep()


@pytest.mark.e2e
def test_the_quick_start_works_as_written(walk: Walk) -> None:
    with walk.make_run() as run:
        key, _ = admin_key_line(run, timeout=120)
        assert key is not None and key.startswith("mf_admin_")
        time.sleep(0.5)  # anything printed after the key would bury it
        printed = [line for line in run.output() if line.strip()]
        assert printed[-1].startswith("Admin API key"), printed[-6:]
        assert printed[-3].startswith(f"MailFleet API: http://127.0.0.1:{walk.api_port}")

        shell = walk.second_shell(key)
        assert shell.returncode == 0, shell.stderr[-4000:]

        # What the README promises each line shows, read from what the lines printed
        # (curl's answers run together: they end without a newline).
        out = shell.stdout
        assert json_at(out, '{"status"') == {"status": "ok"}  # /healthz
        assert json_at(out, '{"id"')["name"] == "Acme"  # the tenant made with curl
        server = assigned(shell.stderr, "SERVER")
        assert UUID.fullmatch(server), server
        listing = [line for line in out.splitlines() if server in line]
        assert listing and "ready" in listing[0] and "online" in listing[0], out
        metrics = json_at(out, '{"server_id"')
        assert metrics["server_id"] == server and metrics["samples"], metrics

        # The VPS ran under the relative home, made absolute: its files went with it.
        assert (walk.directory / "var" / "mailfleet.db").is_file()
        assert walk.leftovers() == []

    stopped = run.output()
    assert not any("Traceback" in line for line in stopped), "\n".join(stopped[-60:])

    # A second `make run` on the same home, timed as benchmarks/first_run.py times it (this
    # walk is that harness's smoke run: its first start is the one above): no new key, and
    # the second shell again ends with a ready server, deleted without a trace.
    _, second = one_start(walk, key, limit=120, n=1)
    assert 0 < second["api_and_key_seconds"] < second["to_ready_server_seconds"]
    assert walk.leftovers() == []
    # The restart (tests/e2e/test_serve.py starts serve once): OpenBao was unsealed from the
    # kept key (the server's agent got its certificate) and the first key still works, so
    # no second one was made; what the first start made is still there.
    restarted = walk.runs[-1].output()
    line = next(line for line in restarted if line.startswith("Admin API key"))
    assert line.startswith("Admin API key: one exists (mf_admin_"), line
    assert line.endswith("make another with 'mailfleet api-key create --admin'")
    assert not any("Traceback" in line for line in restarted), "\n".join(restarted[-60:])
    database = walk.directory / "var" / "mailfleet.db"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM tenants")}
    assert {"Acme", "acme", "acme-1"} <= names, names
    assert live_admin_keys(database) == 1
