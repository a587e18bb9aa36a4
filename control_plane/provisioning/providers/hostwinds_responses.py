"""Reading Hostwinds Cloud API answers: error detection, instance/plan/IP mapping, statuses.

Pure functions, no I/O, so the mapping can be read (and checked) apart from the transport.
Sources for every field name are listed in ``hostwinds.py``'s module docstring. Where the
public reference is vague (the ``flavor`` object, the list wrappers) the parsers accept both
shapes seen in the reference and in public client code, and never copy the raw object
anywhere: ``get_instance`` answers carry the root ``password`` and ``configkey``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from control_plane.provisioning.providers.base import (
    Instance,
    InstanceStatus,
    Plan,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    Region,
)

log = logging.getLogger(__name__)

# Hostwinds' status strings (upper-cased). "ACTIVE" is the status seen on live accounts and
# "RESIZED" is the one the upgrade flow documents; the instance object is OpenStack-shaped
# (vm_state, task_state, power_state, flavor), so Nova's status names are mapped as well.
_STATUSES: dict[str, InstanceStatus] = {
    "BUILD": "creating",
    "BUILDING": "creating",
    "PENDING": "creating",
    "ACTIVE": "running",
    "REBOOT": "running",
    "HARD_REBOOT": "running",
    "RESCUE": "running",
    "SHUTOFF": "stopped",
    "STOPPED": "stopped",
    "SUSPENDED": "stopped",
    "PAUSED": "stopped",
    "RESIZE": "resizing",
    "MIGRATING": "resizing",
    "REVERT_RESIZE": "resizing",
    "RESIZED": "resize_pending_confirm",
    "VERIFY_RESIZE": "resize_pending_confirm",
    "DELETED": "terminated",
    "SOFT_DELETED": "terminated",
    "TERMINATED": "terminated",
    "ERROR": "error",
}

# Phrases that mean "slow down" in an error body; Hostwinds does not document its own wording.
_RATE_LIMIT_MARKERS = ("rate limit", "too many requests", "try again later", "please wait")
# "A valid serviceid is required." is what the reference shows for an unknown serviceid.
_NOT_FOUND_MARKERS = ("valid serviceid", "not found", "does not exist")


def error_message(body: Any) -> str | None:
    """Hostwinds' own message if ``body`` reports an error (it does so with HTTP 200)."""
    items: Iterable[Any] = body if isinstance(body, list) else [body]
    for item in items:
        if isinstance(item, Mapping) and str(item.get("result", "")).lower() == "error":
            return str(item.get("message") or "unspecified error")
    return None


def error_for(message: str, action: str) -> ProviderError:
    """The exception an error body becomes; the message stays Hostwinds' own."""
    lowered = message.lower()
    text = f"Hostwinds {action}: {message}"
    if any(marker in lowered for marker in _RATE_LIMIT_MARKERS):
        return ProviderRateLimited(text)
    if any(marker in lowered for marker in _NOT_FOUND_MARKERS):
        return ProviderNotFound(text)
    return ProviderError(text, retryable=False)


def unwrap(body: Any) -> Any:
    """``{"success": X}`` → X; anything else unchanged (both shapes occur)."""
    if isinstance(body, Mapping) and "success" in body:
        return body["success"]
    return body


def _records(value: Any) -> list[Mapping[str, Any]]:
    """A list of objects from a list, or from an object keyed by id."""
    if isinstance(value, Mapping):
        value = list(value.values())
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _addresses(values: Iterable[Any]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for value in values:
        raw = value.get("ip") if isinstance(value, Mapping) else value
        for part in str(raw or "").replace(",", " ").split():
            try:
                address = ipaddress.ip_address(part.strip())
            except ValueError:
                continue
            if address not in found:
                found.append(address)
    return found


def map_status(status: Any, vm_state: Any = None, suspended: Any = 0) -> InstanceStatus:
    """Hostwinds status (or, when empty, the OpenStack vm_state) → MailFleet's status.

    A word not listed here means "not ready yet" (``creating``), never a failure: the
    reference documents only ACTIVE and RESIZED, so an unlisted word is far more likely a
    step we have not seen than a broken VPS; the boot deadline still ends a wait that never
    ends. ``ERROR`` (OpenStack's) is the one word read as failed.
    """
    if str(suspended) == "1":
        return "stopped"
    for value in (status, vm_state):
        key = str(value or "").strip().upper().replace(" ", "_")
        if key in _STATUSES:
            return _STATUSES[key]
    log.warning("unknown Hostwinds status %r (vm_state %r): not ready yet", status, vm_state)
    return "creating"


def parse_instance(obj: Any) -> Instance:
    if not isinstance(obj, Mapping) or obj.get("serviceid") in (None, ""):
        raise ProviderError("Hostwinds sent an instance without a serviceid", retryable=False)
    listed = obj.get("ips")
    ips: list[Any] = listed if isinstance(listed, list) else []
    addresses = _addresses([obj.get("main_ip"), *ips, obj.get("ip_v6")])
    private = _addresses([obj.get("private_ip")])
    public = [address for address in addresses if address not in private]
    return Instance(
        id=str(obj["serviceid"]),
        name=str(obj.get("srvrname") or obj.get("name") or obj.get("hostname") or ""),
        status=map_status(obj.get("status"), obj.get("vm_state"), obj.get("is_suspended")),
        region=str(obj.get("location_id") or ""),
        plan=str(obj.get("product_id") or ""),
        ipv4=tuple(str(a) for a in public if a.version == 4),
        ipv6=tuple(str(a) for a in public if a.version == 6),
    )


def parse_instances(body: Any) -> tuple[Instance, ...]:
    return tuple(parse_instance(obj) for obj in _records(unwrap(body)))


def parse_ips(body: Any) -> tuple[str, ...]:
    """``get_instance_ips``: ``{"success": {"IP Addresses": [{"ip": …}, …]}}`` or a list."""
    value = unwrap(body)
    if isinstance(value, Mapping):
        value = value.get("IP Addresses", value.get("ips", []))
    if not isinstance(value, list):
        return ()
    return tuple(str(address) for address in _addresses(value))


def _number(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def parse_bandwidth(value: Any) -> int | None:
    """A plan's ``bandwidth`` (a string) as whole GB a month: a bare number is GB, like
    ``ram`` and ``disk``; ``2 TB`` or ``500GB`` carry their unit (a TB is 1,000 GB, as
    transfer is sold). Missing, zero, "unlimited" or unreadable: None (no allowance known,
    so no overage is charged rather than all of it)."""
    text = str(value or "").strip().upper().replace(" ", "")
    factor = 1
    for unit, multiple in (("TB", 1000), ("GB", 1)):
        if text.endswith(unit):
            text, factor = text.removesuffix(unit), multiple
            break
    number = _number(text)
    if number is None or number <= 0:
        return None
    return int(number * factor)


def parse_plans(body: Any, currency: str) -> tuple[Plan, ...]:
    """``get_price_list`` entries with a fixed monthly price; custom plans are skipped.

    ``ram``, ``cpu`` and ``disk`` are strings in GB, cores and GB; the id is ``rid``, the
    value ``add_instance`` and ``upgrade_instance`` take; ``bandwidth`` the monthly transfer
    allowance (see ``parse_bandwidth``).
    """
    plans: list[Plan] = []
    for entry in _records(unwrap(body)):
        plan_id = entry.get("rid") or entry.get("id")
        price = _number(entry.get("monthly"))
        ram, cpu, disk = (_number(entry.get(k)) for k in ("ram", "cpu", "disk"))
        if plan_id in (None, "") or price is None or ram is None or cpu is None or disk is None:
            continue
        plans.append(
            Plan(
                id=str(plan_id),
                name=str(entry.get("name") or plan_id),
                vcpus=int(cpu),
                memory_mb=int(ram * 1024),
                disk_gb=int(disk),
                monthly_price=price,
                currency=currency,
                included_gb=parse_bandwidth(entry.get("bandwidth")),
            )
        )
    return tuple(plans)


def parse_locations(body: Any) -> tuple[Region, ...]:
    """``get_locations``: the source names the action, not its answer, so both likely shapes
    are read: a list (or id-keyed object) of records with an id and a name, or an object
    mapping ids to names. Records without a numeric id are skipped (``location_id`` is an
    integer in ``add_instance``)."""
    value = unwrap(body)
    regions: list[Region] = []
    if isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values()):
        pairs = [(key, name) for key, name in value.items()]
    else:
        pairs = []
        for entry in _records(value):
            key = entry.get("id", entry.get("location_id"))
            label = entry.get("name") or entry.get("location") or entry.get("city") or key
            pairs.append((key, label))
    for key, label in pairs:
        if str(key).strip().isdigit():
            regions.append(Region(str(key).strip(), str(label).strip()))
    return tuple(regions)


_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[A-Za-z0-9+/=\s]+?-----END \1PRIVATE KEY-----"
)


def find_private_key(body: Any) -> str | None:
    """The private key in ``add_ssh_key``'s answer, wherever it sits: the sources show the
    answer carries the key (kept as sensitive) but not under which field. Never logged."""
    if isinstance(body, str):
        found = _PRIVATE_KEY.search(body.replace("\\n", "\n"))
        return found.group(0) + "\n" if found else None
    if not isinstance(body, Mapping | list):
        return None
    values: Iterable[Any] = body.values() if isinstance(body, Mapping) else body
    for value in values:
        key = find_private_key(value)
        if key is not None:
            return key
    return None


def invoice_paid(body: Any) -> bool:
    """Whether an order's answer reports its invoice paid: ``add_instance``'s documented
    answer starts with ``{"result": "success", "action": "Invoice Paid", …}`` (the account's
    credit paid it); an upgrade order's answer is read the same way."""
    items: Iterable[Any] = body if isinstance(body, list) else [body]
    return any(
        isinstance(item, Mapping)
        and str(item.get("result", "")).lower() == "success"
        and str(item.get("action", "")).strip().lower() == "invoice paid"
        for item in items
    )
