"""What one check says. Every check in ``health/`` returns these; the sweep stores them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CheckState = Literal["ok", "failing", "unknown"]
Severity = Literal["critical", "warning", "info"]


@dataclass(frozen=True)
class Result:
    """``failing``: checked, and wrong (a refused port, a wrong banner, a full disk);
    ``unknown``: could not check (a timeout, no data) — never ok, never a verdict.

    ``check`` is a stable id (``smtp.25``, ``tls.expiry``, ``agent.link``, ``disk./``) that
    silences and incidents match on.
    """

    check: str
    state: CheckState
    severity: Severity
    detail: str
    observed: str | None = None
    threshold: str | None = None
