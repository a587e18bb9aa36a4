"""The desired state on disk (``<state_dir>/network.json``, mode 0600), so the agent can put
it back after a reboot has emptied the kernel's ruleset. Written only after nft accepted it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from agent.errors import CommandError
from agent.files import write_atomically
from agent.network.ruleset import MAX_CAP, Desired, Limit, Limits, Snat

FILE_NAME = "network.json"
COUNTS_NAME = "network-counts.json"  # the day's counts as they were when the agent stopped


def to_json(desired: Desired) -> dict[str, Any]:
    limits = desired.limits
    return {
        "snat": {"to_ip": desired.snat.to_ip, "ports": list(desired.snat.ports)},
        "limits": None
        if limits is None
        else {
            "day": limits.day.isoformat(),
            "limits": {
                address: {"cap": limit.cap, "paused": limit.paused, "reason": limit.reason}
                for address, limit in sorted(limits.by_ip.items())
            },
        },
    }


def from_json(data: dict[str, Any]) -> Desired:
    snat = data.get("snat") or {}
    limits = data.get("limits")
    return Desired(
        Snat(snat.get("to_ip"), tuple(snat.get("ports") or (25,))),
        None
        if limits is None
        else Limits(
            date.fromisoformat(limits["day"]),
            {
                address: Limit(item.get("cap"), bool(item.get("paused")), item.get("reason", ""))
                for address, item in limits["limits"].items()
            },
        ),
    )


def load(path: Path) -> Desired | None:
    """The saved state, or None when nothing was ever set here."""
    try:
        data = json.loads(path.read_text())
        return from_json(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CommandError(f"{path}: unreadable network state: {exc}") from None


def save(path: Path, desired: Desired) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(path, json.dumps(to_json(desired), indent=2) + "\n", mode=0o600)


def load_counts(path: Path) -> dict[str, int]:
    """Counts saved at the last stop, by counting-set name; none if unreadable (a hint only)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, int) and 0 <= v <= MAX_CAP}


def save_counts(path: Path, counts: dict[str, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(path, json.dumps(counts, sort_keys=True) + "\n", mode=0o600)
