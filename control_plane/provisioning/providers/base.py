"""The interface every VPS provider driver implements.

The provisioning workflow (requested → creating → booting → …) talks only to this interface,
so a provider is a driver plus a contract double, never a change to the workflow. Values are
frozen dataclasses holding provider ids as strings: the workflow stores them in its rows and
hands them back on resume, so nothing here depends on a live driver object.

Errors say whether trying again later can help (``retryable``); drivers already retry what
they safely can, so a retryable error reaching the caller means "back off and resume this
step later", and a non-retryable one means "this step failed, record why".
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from control_plane.errors import MailFleetError

InstanceStatus = Literal[
    "creating",
    "running",
    "stopped",
    "resizing",
    "resize_pending_confirm",
    "terminated",
    "error",
]


@dataclass(frozen=True)
class Region:
    """Where an instance can be placed; ``id`` is the provider's own identifier."""

    id: str
    name: str


@dataclass(frozen=True)
class Plan:
    """A size an instance can be created with or resized to, with its monthly price.

    The price is kept so cost allocation can be computed without another provider call;
    the price catalog (``costs/catalog.py``) records it with its date.
    """

    id: str
    name: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    monthly_price: Decimal
    currency: str
    included_gb: int | None = None  # monthly bandwidth allowance; None: unmetered or unknown


@dataclass(frozen=True)
class Instance:
    """One VPS as the provider reports it; ``region`` and ``plan`` are ids."""

    id: str
    name: str
    status: InstanceStatus
    region: str
    plan: str
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]


class ProviderError(MailFleetError):
    """A provider refused or failed a request; ``message`` is safe to log and show."""

    status = 502
    title = "Provider error"

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class ProviderNotFound(ProviderError):
    """The instance (or IP) does not exist at the provider, or no longer does."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message, retryable)


class ProviderRateLimited(ProviderError):
    """The provider asked us to slow down and the driver's own retries ran out."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message, retryable)


class ProviderUnavailable(ProviderError):
    """The driver's circuit is open after repeated failures: no request was sent.

    Failing fast here keeps a struggling provider from being hammered by every workflow
    at once; callers try again after the cool-down.
    """

    status = 503
    title = "Provider unavailable"

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message, retryable)


class IssuedKeys(Protocol):
    """Where a provider that makes a server's SSH key pair itself (Hostwinds' ``add_ssh_key``
    answers with the private half) keeps it: the server's path in Vault. The workflow hands
    one to ``create``; the private key goes nowhere else (no log, no row, no answer)."""

    async def issued(self, key_name: str) -> bool:
        """Whether the private half of the provider's key ``key_name`` is already kept."""
        ...

    async def keep(self, key_name: str, private_key: str) -> None:
        """Keep the private half (``ValueError`` if it is not a private key we can read)."""
        ...


class Provider(Protocol):
    """What a VPS provider driver offers the provisioning workflow.

    Every method is a bounded network call (timeouts, limited retries). Creation and resizes
    are asynchronous at most providers: ``create`` and ``resize`` return once the provider
    has accepted the order, and the workflow polls ``get`` for the status to move on.
    """

    name: str

    async def regions(self) -> tuple[Region, ...]:
        """Regions an instance can be created in."""
        ...

    async def plans(self) -> tuple[Plan, ...]:
        """Sizes on offer, with monthly prices (for cost allocation)."""
        ...

    async def create(
        self,
        name: str,
        region: str,
        plan: str,
        user_data: str,
        ssh_public_key: str,
        issued_keys: IssuedKeys | None = None,
    ) -> Instance:
        """Order an instance; returns once accepted (status usually ``creating``).

        ``name`` is unique per provider account and makes the call idempotent: if an
        instance with that name already exists it is returned instead of ordering another,
        so a workflow resumed after a crash never rents two machines. A provider that issues
        the SSH key itself (instead of taking ``ssh_public_key``) keeps it in ``issued_keys``.
        """
        ...

    async def get(self, instance_id: str) -> Instance:
        """The instance now; ``ProviderNotFound`` once it is gone."""
        ...

    async def list(self) -> tuple[Instance, ...]:
        """Every instance in the account (reconciliation, orphan detection)."""
        ...

    async def terminate(self, instance_id: str) -> None:
        """Destroy the instance; an instance already gone counts as done."""
        ...

    async def boot_failure(self, instance_id: str) -> str | None:
        """Why the instance's boot failed, if the provider can tell (None: it cannot, or the
        boot has not failed), so provisioning fails at once instead of at its deadline."""
        ...

    async def resize(self, instance_id: str, plan: str) -> Instance:
        """Start moving the instance to ``plan``; confirm or revert it afterwards."""
        ...

    async def confirm_resize(self, instance_id: str) -> Instance:
        """Keep the new size once the instance reports ``resize_pending_confirm``."""
        ...

    async def revert_resize(self, instance_id: str) -> Instance:
        """Go back to the old size once the instance reports ``resize_pending_confirm``."""
        ...

    async def list_ips(self, instance_id: str) -> tuple[str, ...]:
        """Every address on the instance, main one first."""
        ...

    async def add_ip(self, instance_id: str) -> str:
        """Attach one more public IPv4 address (IP switches) and return it."""
        ...

    async def remove_ip(self, instance_id: str, ip: str) -> None:
        """Release a secondary address; the main address cannot be removed."""
        ...

    async def set_reverse_dns(self, instance_id: str, ip: str, hostname: str) -> None:
        """Point the PTR record of ``ip`` at ``hostname`` (mail deliverability needs it)."""
        ...
