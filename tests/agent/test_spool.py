"""The spool on a real directory, including a writer killed with SIGKILL mid-append."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.spool import Spool

REPO = Path(__file__).resolve().parents[2]


def test_batches_come_back_oldest_first_with_increasing_sequences(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    assert spool.next_sequence() == 1
    assert (len(spool), spool.size_bytes, spool.pending()) == (0, 0, [])

    assert [spool.append(p) for p in (b"one", b"two", b"")] == [1, 2, 3]

    assert spool.pending() == [(1, b"one"), (2, b"two"), (3, b"")]
    assert spool.pending(limit=2) == [(1, b"one"), (2, b"two")]
    assert spool.pending(limit=0) == []
    assert (len(spool), spool.size_bytes, spool.next_sequence()) == (3, 6, 4)


def test_next_sequence_is_the_one_append_uses(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    for _ in range(3):
        expected = spool.next_sequence()
        assert spool.next_sequence() == expected  # asking does not use it up
        assert spool.append(f"batch {expected}".encode()) == expected


def test_acknowledge_deletes_up_to_and_including_and_is_idempotent(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    for payload in (b"a", b"b", b"c", b"d"):
        spool.append(payload)

    spool.acknowledge(2)
    assert spool.pending() == [(3, b"c"), (4, b"d")]
    spool.acknowledge(2)
    spool.acknowledge(0)
    assert spool.pending() == [(3, b"c"), (4, b"d")]
    assert (len(spool), spool.size_bytes) == (2, 2)

    spool.acknowledge(100)
    assert (spool.pending(), len(spool), spool.size_bytes) == ([], 0, 0)
    assert spool.next_sequence() == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sequence"]


def test_pending_batches_and_the_sequence_survive_reopening(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    for payload in (b"a", b"b", b"c"):
        spool.append(payload)
    spool.acknowledge(1)

    reopened = Spool(tmp_path, max_bytes=1000)
    assert reopened.pending() == [(2, b"b"), (3, b"c")]
    assert (len(reopened), reopened.size_bytes) == (2, 2)
    assert reopened.append(b"d") == 4


def test_the_sequence_never_goes_back_after_everything_was_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    for payload in (b"a", b"b", b"c"):
        spool.append(payload)
    spool.acknowledge(3)

    assert Spool(tmp_path, max_bytes=1000).next_sequence() == 4
    again = Spool(tmp_path, max_bytes=1000)
    assert again.append(b"d") == 4
    again.acknowledge(4)
    assert Spool(tmp_path, max_bytes=1000).append(b"e") == 5


def test_the_oldest_batches_are_dropped_at_the_byte_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    assert [spool.append(bytes([n]) * 40) for n in range(2)] == [1, 2]
    assert spool.dropped_batches == 0

    spool.append(b"x" * 20)  # exactly 100 bytes: still fits
    assert ([s for s, _ in spool.pending()], spool.size_bytes) == ([1, 2, 3], 100)

    spool.append(b"y")
    assert [s for s, _ in spool.pending()] == [2, 3, 4]
    assert (spool.size_bytes, spool.dropped_batches) == (61, 1)

    spool.append(b"z" * 100)  # a batch as large as the spool pushes out everything else
    assert spool.pending() == [(5, b"z" * 100)]
    assert (spool.size_bytes, spool.dropped_batches) == (100, 4)
    assert len(list(tmp_path.glob("*.batch"))) == 1


def test_a_batch_larger_than_the_spool_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10)
    spool.append(b"kept")

    with pytest.raises(ValueError, match="11 bytes"):
        spool.append(b"x" * 11)

    assert spool.pending() == [(1, b"kept")]
    assert (spool.next_sequence(), spool.dropped_batches) == (2, 0)


def test_reopening_with_a_smaller_bound_drops_the_oldest(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100)
    for n in range(4):
        spool.append(bytes([n]) * 10)

    smaller = Spool(tmp_path, max_bytes=25)
    assert [s for s, _ in smaller.pending()] == [3, 4]
    assert smaller.dropped_batches == 2

    tiny = Spool(tmp_path, max_bytes=5)  # not even the newest fits any more
    assert (tiny.pending(), tiny.next_sequence()) == ([], 5)


def test_a_torn_write_left_by_a_crash_is_ignored_and_cleaned(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    spool.append(b"complete")
    (tmp_path / "00000000000000000002.batch.tmp").write_bytes(b"half a bat")
    (tmp_path / "sequence.tmp").write_bytes(b"9")
    (tmp_path / "notes.txt").write_text("not ours")

    reopened = Spool(tmp_path, max_bytes=1000)

    assert reopened.pending() == [(1, b"complete")]
    assert reopened.size_bytes == len(b"complete")
    assert reopened.append(b"next") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00000000000000000001.batch",
        "00000000000000000002.batch",
        "notes.txt",
    ]


def test_a_damaged_counter_stops_the_spool_rather_than_reusing_numbers(tmp_path: Path) -> None:
    (tmp_path / "sequence").write_text("")
    with pytest.raises(ValueError, match="corrupt"):
        Spool(tmp_path, max_bytes=1000)


def test_the_bound_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        Spool(tmp_path, max_bytes=0)


WRITER = """
import hashlib, random, sys
from pathlib import Path
from agent.spool import Spool

spool = Spool(Path(sys.argv[1]), max_bytes=int(sys.argv[2]))
rng = random.Random(int(sys.argv[3]))
for i in range(1, 20_001):  # bounded even if nobody kills it
    sequence = spool.next_sequence()
    body = rng.randbytes(rng.randint(0, 3000))
    payload = sequence.to_bytes(8, "big") + hashlib.sha256(body).digest() + body
    assert spool.append(payload) == sequence
    print("appended", sequence, flush=True)
    if i % 25 == 0:
        spool.acknowledge(sequence - 10)
        print("acknowledged", sequence - 10, flush=True)
"""


def run_writer_until_killed(directory: Path, max_bytes: int, seed: int, log: Path) -> list[str]:
    """Start the writer, SIGKILL it at a random moment after 60 appends, return its output."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(directory), str(max_bytes), str(seed)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count("appended") < 60:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the writer is too slow"
            time.sleep(0.01)
        time.sleep(random.Random(seed).uniform(0, 0.05))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    # The kill may tear the last line (the output is buffered): only whole lines count.
    text = log.read_text()
    return text[: text.rfind("\n") + 1].splitlines()


def test_a_writer_killed_mid_append_leaves_only_complete_batches(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    max_bytes = 20_000
    previous_next = 1
    for seed in range(3):
        lines = run_writer_until_killed(directory, max_bytes, seed, tmp_path / f"writer{seed}.log")
        appended = [int(line.split()[1]) for line in lines if line.startswith("appended")]
        acknowledged = [int(line.split()[1]) for line in lines if line.startswith("acknowledged")]
        assert appended[0] == previous_next  # numbering continued from the last run
        assert appended == list(range(appended[0], appended[-1] + 1))

        spool = Spool(directory, max_bytes=max_bytes)

        batches = spool.pending()
        sequences = [s for s, _ in batches]
        # Drops and acknowledgements only ever remove the oldest: no holes in the middle.
        assert sequences == list(range(sequences[0], sequences[-1] + 1))
        assert sequences[-1] in (appended[-1], appended[-1] + 1)  # every returned append kept
        if acknowledged:
            assert sequences[0] > max(acknowledged)
        for sequence, payload in batches:
            assert int.from_bytes(payload[:8], "big") == sequence
            assert hashlib.sha256(payload[40:]).digest() == payload[8:40]
        assert spool.size_bytes == sum(len(p) for _, p in batches) <= max_bytes
        assert not list(directory.glob("*.tmp"))
        previous_next = spool.next_sequence()
        assert previous_next == sequences[-1] + 1
