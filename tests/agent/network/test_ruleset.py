"""The pure parts: the rendered transaction, reading the kernel's listing, payloads, the file."""

from __future__ import annotations

import stat
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from agent.commands import handlers_for
from agent.config import load_config
from agent.errors import CommandError
from agent.network import state
from agent.network.commands import parse_limits, parse_snat
from agent.network.ruleset import (
    UNCAPPED_SIZE,
    Desired,
    Limit,
    Limits,
    Live,
    LiveSet,
    Snat,
    parse,
    render,
    set_name,
    used,
)

DAY = date(2026, 11, 30)
IP1, IP2, IP3 = "198.19.7.2", "198.19.7.3", "198.19.7.4"
LIMITS = Limits(DAY, {IP1: Limit(None), IP2: Limit(3), IP3: Limit(5, True, "listed")})

FIRST_APPLY = """\
table ip mailfleet {}
table ip mailfleet {
	set d20261130_198_19_7_2 {
		typeof ct id
		size 1048576
		flags dynamic
	}
	set d20261130_198_19_7_3 {
		typeof ct id
		size 3
		flags dynamic
	}
	set d20261130_198_19_7_4 {
		typeof ct id
		size 5
		flags dynamic
	}
	chain snat_out {
		type nat hook postrouting priority srcnat - 10; policy accept;
	}
	chain filter_output {
		type filter hook output priority filter; policy accept;
		tcp dport 25 ct state new jump smtp_local
	}
	chain filter_forward {
		type filter hook forward priority filter; policy accept;
		tcp dport 25 ct state new jump smtp_forwarded
	}
	chain smtp_local {
		ip saddr 198.19.7.2 add @d20261130_198_19_7_2 { ct id }
		ip saddr 198.19.7.3 add @d20261130_198_19_7_3 { ct id } accept
		ip saddr 198.19.7.3 reject with tcp reset
		ip saddr 198.19.7.4 reject with tcp reset
	}
	chain smtp_forwarded {
		add @d20261130_198_19_7_2 { ct id }
	}
}
"""


def test_a_first_apply_without_snat_keys_limits_on_the_source() -> None:
    """Local connections by their own source; forwarded ones (MailU's containers) by the
    default source, where they are masqueraded to."""
    assert render(Desired(Snat(None), LIMITS), None, default_source=IP1) == FIRST_APPLY


def test_with_snat_every_smtp_connection_counts_against_the_snat_address() -> None:
    text = render(Desired(Snat(IP2, (25, 2525)), LIMITS), None, default_source=IP1)

    assert "\t\ttcp dport { 25, 2525 } snat ip to 198.19.7.3\n" in text
    rules = [
        "add @d20261130_198_19_7_3 { ct id } accept",
        "reject with tcp reset",
    ]
    for chain in ("smtp_local", "smtp_forwarded"):
        body = "".join(f"\t\t{rule}\n" for rule in rules)
        assert f"\tchain {chain} {{\n{body}\t}}" in text


def test_a_re_apply_keeps_todays_sets_and_replaces_the_chains() -> None:
    live = Live(
        chains=("snat_out", "smtp_local", "an_old_chain"),
        sets={
            set_name(DAY, IP2): LiveSet(3, (11, 12, 13)),  # unchanged: kept, count and all
            set_name(DAY, IP3): LiveSet(4, (21,)),  # the cap changed: re-created with its count
            set_name(date(2026, 11, 29), IP2): LiveSet(3, (1,)),  # yesterday's: gone
            set_name(DAY, "198.19.7.9"): LiveSet(3, ()),  # no longer listed: gone
        },
    )

    lines = render(Desired(Snat(None), LIMITS), live, IP1).splitlines()

    assert lines[:10] == [
        "table ip mailfleet {}",
        "flush chain ip mailfleet snat_out",
        "flush chain ip mailfleet smtp_local",
        "flush chain ip mailfleet an_old_chain",
        "delete chain ip mailfleet snat_out",
        "delete chain ip mailfleet smtp_local",
        "delete chain ip mailfleet an_old_chain",
        "delete set ip mailfleet d20261130_198_19_7_4",
        "delete set ip mailfleet d20261129_198_19_7_3",
        "delete set ip mailfleet d20261130_198_19_7_9",
    ]
    assert lines[10] == "table ip mailfleet {"
    text = "\n".join(lines)
    assert "delete set ip mailfleet d20261130_198_19_7_3" not in text
    assert "\t\tsize 5\n\t\tflags dynamic\n\t\telements = { 21 }\n" in text


def test_a_cap_below_todays_count_keeps_the_count_and_refuses() -> None:
    live = Live(sets={set_name(DAY, IP2): LiveSet(10, (1, 2, 3, 4))})
    text = render(Desired(Snat(None), Limits(DAY, {IP2: Limit(2)})), live)

    # The set is as big as what it holds: full, so the next connection is reset.
    assert "\t\tsize 4\n\t\tflags dynamic\n\t\telements = { 1, 2, 3, 4 }\n" in text


def test_cap_zero_and_pause_reset_without_counting() -> None:
    text = render(Desired(Snat(None), Limits(DAY, {IP1: Limit(0), IP2: Limit(None, True)})), None)

    assert "\t\tip saddr 198.19.7.2 reject with tcp reset\n" in text
    assert "\t\tip saddr 198.19.7.3 reject with tcp reset\n" in text
    assert "add @" not in text
    assert "size 1\n" in text  # never 0: nftables reads size 0 as "unlimited"


def test_no_limits_and_no_snat_leave_the_chains_empty() -> None:
    text = render(Desired(), Live(sets={set_name(DAY, IP1): LiveSet(3, (1,))}))

    assert "delete set ip mailfleet d20261130_198_19_7_2" in text
    assert "\tchain smtp_local {\n\t}" in text and "\tchain snat_out {\n\t\ttype nat" in text
    assert "snat ip to" not in text


def test_the_kernels_listing_is_read_back() -> None:
    """A listing nft 1.0.6 printed for a rendered state (plus two counted connections)."""
    live = parse((Path(__file__).parent / "listing.json").read_text())

    assert live.snat_to == "198.19.250.2" and live.snat_ports == (25, 2525)
    assert live.chains == (
        "snat_out",
        "filter_output",
        "filter_forward",
        "smtp_local",
        "smtp_forwarded",
    )
    assert live.sets["d20261130_198_19_250_2"] == LiveSet(3, (7, 9))
    assert live.sets["d20261130_198_19_250_1"] == LiveSet(UNCAPPED_SIZE, ())
    assert used(live, DAY, "198.19.250.2") == 2
    assert used(live, date(2026, 12, 1), "198.19.250.2") == 0
    assert used(None, DAY, "198.19.250.2") == 0


def test_snat_payloads() -> None:
    assert parse_snat({"to_ip": IP2, "ports": [2525, 25, 2525]}) == Snat(IP2, (25, 2525))
    assert parse_snat({"to_ip": None}) == Snat(None, (25,))
    assert parse_snat({"to_ip": IP2, "ports": []}).ports == (25,)  # 25 always


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"to_ip": "198.19.7"}, "payload.to_ip"),
        ({"to_ip": "::1"}, "payload.to_ip"),
        ({"to_ip": 3}, "payload.to_ip"),
        ({"to_ip": IP1, "ports": [0]}, "payload.ports"),
        ({"to_ip": IP1, "ports": ["25"]}, "payload.ports"),
        ({"to_ip": IP1, "ports": 25}, "payload.ports"),
    ],
)
def test_bad_snat_payloads_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(CommandError, match=field):
        parse_snat(payload)


def test_limits_payloads() -> None:
    payload = {
        "day": "2026-11-30",
        "limits": {IP1: {"cap": 50, "paused": False, "reason": ""}, IP2: {"cap": None}},
    }
    assert parse_limits(payload) == Limits(DAY, {IP1: Limit(50), IP2: Limit(None)})


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"limits": {}}, "payload.day"),
        ({"day": "30/11/2026", "limits": {}}, "payload.day"),
        ({"day": "2026-11-30"}, "payload.limits"),
        ({"day": "2026-11-30", "limits": {"mail": {}}}, "key must be an IPv4"),
        ({"day": "2026-11-30", "limits": {IP1: {"cap": -1}}}, r"\.cap"),
        ({"day": "2026-11-30", "limits": {IP1: {"cap": True}}}, r"\.cap"),
        ({"day": "2026-11-30", "limits": {IP1: {"paused": "yes"}}}, r"\.paused"),
        ({"day": "2026-11-30", "limits": {IP1: {"reason": 4}}}, r"\.reason"),
    ],
)
def test_bad_limits_payloads_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(CommandError, match=field):
        parse_limits(payload)


def test_the_state_file_round_trips_and_is_private(tmp_path: Path) -> None:
    desired = Desired(Snat(IP2, (25, 2525)), LIMITS)
    path = tmp_path / "state" / state.FILE_NAME

    assert state.load(path) is None
    state.save(path, desired)

    assert state.load(path) == desired
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("{not json")
    with pytest.raises(CommandError, match="unreadable network state"):
        state.load(path)


def test_the_agent_runs_the_four_commands(tmp_path: Path) -> None:
    handlers = handlers_for(tmp_path)
    kinds = {"network.snat.set", "network.snat.show", "network.limits.set", "network.limits.show"}
    assert kinds <= set(handlers)


def test_the_nft_binary_and_timeout_are_configurable(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        '[control_plane]\naddress = "cp:8443"\nenroll_address = "cp:8444"\n'
        f'ca_pin = "sha256:{"0" * 64}"\n'
        '[agent]\nnft_binary = "/usr/local/sbin/nft"\nnft_timeout_seconds = 3\n'
    )
    loaded = load_config(config)
    assert (loaded.nft_binary, loaded.nft_timeout_seconds) == ("/usr/local/sbin/nft", 3.0)


def test_a_set_the_kernel_lost_starts_from_the_count_saved_at_stop(tmp_path: Path) -> None:
    path = tmp_path / state.COUNTS_NAME
    state.save_counts(path, {set_name(DAY, IP2): 2, set_name(DAY, IP1): 4})
    restored = state.load_counts(path)
    live = Live(sets={set_name(DAY, IP1): LiveSet(UNCAPPED_SIZE, (9,))})  # still there: wins

    text = render(Desired(Snat(None), LIMITS), live, IP1, restored)

    assert "\t\tsize 3\n\t\tflags dynamic\n\t\telements = { 1, 2 }\n" in text
    assert "elements = { 1, 2, 3, 4 }" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text('{"x": -1, "y": "2"')
    assert state.load_counts(path) == {}
