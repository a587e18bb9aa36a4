"""Mail names as MailFleet stores them: IDNA (ASCII), lower case, no trailing dot."""

from __future__ import annotations

import idna

from control_plane.errors import InvalidInput


def idna_name(value: str, field: str, *, min_labels: int = 2) -> str:
    """``value`` in IDNA form; internationalised names are converted, not refused."""
    try:
        name = idna.encode(value.strip().rstrip(".").lower(), uts46=True).decode()
    except idna.IDNAError as exc:
        raise InvalidInput(f"not a valid name: {exc}", field=field) from None
    if name.count(".") < min_labels - 1:
        raise InvalidInput(f"{name!r} needs at least {min_labels} labels", field=field)
    return name


def idna_address(value: str, field: str) -> str:
    """``local@domain`` with the domain in IDNA form and the whole address in lower case."""
    local, at, domain = value.strip().rpartition("@")
    if not at or not local:
        raise InvalidInput(f"{value!r} is not an address local@domain", field=field)
    return f"{local.lower()}@{idna_name(domain, field)}"
