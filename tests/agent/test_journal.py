"""The command journal: no command runs twice, across re-opens, torn writes and kill -9."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent.journal import CommandJournal, JournalCorruptError, JournalInUseError

ROOT = Path(__file__).resolve().parents[2]


def log_records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_begin_finish_result(tmp_path: Path) -> None:
    with CommandJournal(tmp_path / "journal") as journal:
        assert journal.state("a") is None
        assert journal.result("a") is None
        assert journal.begin("a")
        assert journal.state("a") == "started"
        assert journal.result("a") is None
        journal.finish("a", b"\x00done\xff")
        assert journal.state("a") == "finished"
        assert journal.result("a") == b"\x00done\xff"
        assert journal.interrupted() == []


def test_records_are_json_lines_with_base64_results(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    with CommandJournal(path) as journal:
        journal.begin("a")
        journal.finish("a", b"\x01\x02")
    started, finished = log_records(path)
    assert set(started) == {"id", "state", "at"}
    assert started["id"] == "a"
    assert started["state"] == "started"
    assert set(finished) == {"id", "state", "result", "at"}
    assert finished["state"] == "finished"
    assert base64.b64decode(str(finished["result"])) == b"\x01\x02"


def test_a_seen_id_is_refused(tmp_path: Path) -> None:
    with CommandJournal(tmp_path / "journal") as journal:
        assert journal.begin("a")
        assert not journal.begin("a")  # started
        journal.finish("a", b"ok")
        assert not journal.begin("a")  # finished
        assert journal.result("a") == b"ok"  # the redelivery gets the first result back


def test_finish_needs_a_started_command(tmp_path: Path) -> None:
    with CommandJournal(tmp_path / "journal") as journal:
        with pytest.raises(ValueError, match="never started"):
            journal.finish("nope", b"")
        journal.begin("a")
        journal.finish("a", b"1")
        with pytest.raises(ValueError, match="already finished"):
            journal.finish("a", b"2")
        assert journal.result("a") == b"1"
        with pytest.raises(ValueError, match="empty"):
            journal.begin("")


def test_state_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    with CommandJournal(path) as journal:
        journal.begin("done")
        journal.finish("done", b"result bytes")
        journal.begin("running")
    with CommandJournal(path) as journal:
        assert journal.state("done") == "finished"
        assert journal.result("done") == b"result bytes"
        assert journal.state("running") == "started"
        assert not journal.begin("done")
        assert not journal.begin("running")
        assert journal.begin("new")


def test_interrupted_lists_started_but_unfinished(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    with CommandJournal(path) as journal:
        for cid in ("a", "b", "c"):
            journal.begin(cid)
        journal.finish("b", b"ok")
    with CommandJournal(path) as journal:
        assert journal.interrupted() == ["a", "c"]
        # The restarted agent closes them with a failure instead of re-running them.
        journal.finish("a", b"failed: interrupted")
        assert journal.interrupted() == ["c"]
    with CommandJournal(path) as journal:
        assert journal.interrupted() == ["c"]
        assert journal.result("a") == b"failed: interrupted"


@pytest.mark.parametrize(
    "tail",
    [
        b'{"id":"torn","state":"sta',
        b'{"id":"torn","state":"started","at":1.0}',  # whole JSON, but the newline never landed
        b"\x00\x00\x00\x00",
        b"\x00\x00\n\x00\x00\n",
    ],
)
def test_a_torn_last_line_is_ignored(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "journal"
    with CommandJournal(path) as journal:
        journal.begin("a")
        journal.finish("a", b"ok")
        journal.begin("b")
    with path.open("ab") as f:
        f.write(tail)
    with CommandJournal(path) as journal:
        assert journal.state("torn") is None
        assert journal.result("a") == b"ok"
        assert journal.interrupted() == ["b"]
        assert journal.begin("c")  # appends after the cut-off tail, not glued to it
    with CommandJournal(path) as journal:
        assert journal.state("c") == "started"
        assert journal.interrupted() == ["b", "c"]
    assert [r["id"] for r in log_records(path)] == ["a", "a", "b", "c"]


def test_an_unreadable_line_before_the_end_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    with CommandJournal(path) as journal:
        journal.begin("a")
    with path.open("ab") as f:
        f.write(b"garbage\n")
        f.write(b'{"id":"b","state":"started","at":1.0}\n')
    with pytest.raises(JournalCorruptError, match="line 2"):
        CommandJournal(path)
    # A refused open releases its lock.
    path.write_text("")
    CommandJournal(path).close()


def test_only_one_open_journal_per_file(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    journal = CommandJournal(path)
    with pytest.raises(JournalInUseError):
        CommandJournal(path)
    journal.close()
    with pytest.raises(ValueError, match="closed"):
        journal.begin("a")
    CommandJournal(path).close()


def test_compaction_keeps_the_newest_finished_and_all_started(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    keep = 5
    (tmp_path / "journal.tmp").write_bytes(b"left over by a crash mid-compaction")
    with CommandJournal(path, keep_finished=keep) as journal:
        journal.begin("stuck-1")
        for i in range(200):
            journal.begin(f"cmd-{i}")
            journal.finish(f"cmd-{i}", f"result-{i}".encode())
            if i == 100:
                journal.begin("stuck-2")
        # The log never grows far past 4x what it must remember.
        assert len(log_records(path)) <= 4 * (keep + 2) + 64
    newest = [f"cmd-{i}" for i in range(200 - keep, 200)]
    for _ in range(2):  # the compacted log reads back the same, twice
        with CommandJournal(path, keep_finished=keep) as journal:
            assert journal.interrupted() == ["stuck-1", "stuck-2"]
            for i, cid in enumerate(newest, start=200 - keep):
                assert journal.state(cid) == "finished"
                assert journal.result(cid) == f"result-{i}".encode()
                assert not journal.begin(cid)
            # Between compactions a few more may linger, but always a newest run of them.
            remembered = [i for i in range(200) if journal.state(f"cmd-{i}") == "finished"]
            assert remembered == list(range(200 - len(remembered), 200))
            assert len(remembered) < 200 // 4
    assert not (tmp_path / "journal.tmp").exists()


def test_reopening_an_oversized_log_compacts_it(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    with CommandJournal(path) as journal:  # the default keeps everything
        for i in range(100):
            journal.begin(f"cmd-{i}")
            journal.finish(f"cmd-{i}", b"x")
    assert len(log_records(path)) == 200
    with CommandJournal(path, keep_finished=3) as journal:
        assert [journal.state(f"cmd-{i}") for i in (96, 97, 98, 99)] == [
            None,
            "finished",
            "finished",
            "finished",
        ]
    assert [r["id"] for r in log_records(path)] == ["cmd-97", "cmd-98", "cmd-99"]


# A stand-in agent: begins ids in a loop, finishes most, and reports each step once it is
# durable. It runs until the test kills it with SIGKILL.
CHILD = """
import sys
from pathlib import Path
from agent.journal import CommandJournal

path, start, keep = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
journal = CommandJournal(path, keep_finished=keep)
for i in range(start, start + 1_000_000):
    cid = f"cmd-{i}"
    if not journal.begin(cid):
        print(f"refused {cid}", flush=True)
        sys.exit(3)
    print(f"begun {cid}", flush=True)
    if i % 10:
        journal.finish(cid, f"result-{i}".encode())
        print(f"finished {cid}", flush=True)
"""


def run_child_until_killed(path: Path, start: int, keep: int, kill_after: int) -> list[str]:
    """The child's output lines up to the moment it was SIGKILLed after ``kill_after`` begins."""
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(start), str(keep)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    watchdog = threading.Timer(60, process.kill)  # unblocks the reads below if it hangs
    watchdog.start()
    try:
        assert process.stdout is not None
        lines: list[str] = []
        begun = 0
        while begun < kill_after:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            begun += line.startswith("begun ")
        assert begun == kill_after, f"child stopped early: {lines[-3:]}"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL
        lines += process.stdout.read().splitlines()
        return lines
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize("keep", [10_000, 8])
def test_kill_9_never_lets_an_id_run_twice(tmp_path: Path, keep: int) -> None:
    """Four child agents in turn on one journal, each SIGKILLed at a random point."""
    path = tmp_path / "journal"
    rng = random.Random(keep)
    all_begun: list[str] = []
    never_finished: set[str] = set()  # ids the child does not finish (every tenth)
    maybe_interrupted: set[str] = set()  # killed before reporting: durable or not
    for round_no in range(4):
        start = round_no * 1_000_000
        lines = run_child_until_killed(path, start, keep, kill_after=rng.randint(20, 300))
        assert not [line for line in lines if line.startswith("refused ")]
        begun = [line.split()[1] for line in lines if line.startswith("begun ")]
        finished = [line.split()[1] for line in lines if line.startswith("finished ")]
        assert begun == [f"cmd-{i}" for i in range(start, start + len(begun))]
        in_flight = f"cmd-{start + len(begun)}"
        all_begun += begun
        never_finished |= {cid for cid in begun if int(cid.split("-")[1]) % 10 == 0}
        maybe_interrupted |= (set(begun) - set(finished) - never_finished) | {in_flight}

        with CommandJournal(path, keep_finished=keep) as journal:
            interrupted = set(journal.interrupted())
            # Started-but-unfinished ids are never forgotten, from this round or earlier.
            assert never_finished <= interrupted
            assert interrupted - never_finished <= maybe_interrupted
            # What the child reported finished (within retention) reads back with its result.
            newest_finished = finished[-(keep - 1) :]
            for cid in newest_finished:
                assert journal.state(cid) == "finished"
                assert journal.result(cid) == f"result-{cid.split('-')[1]}".encode()
            # Nothing the child never reached exists.
            assert journal.state(f"cmd-{start + len(begun) + 1}") is None
            # No id the child was told to run (within retention) can be begun again.
            remembered = all_begun if keep == 10_000 else [*never_finished, *newest_finished]
            for cid in remembered:
                assert not journal.begin(cid), cid
            if journal.state(in_flight) is not None:
                assert not journal.begin(in_flight)
