"""The ``ssh`` provider: machines a customer already has, adopted over SSH.

MailFleet rents nothing here: an adopted server is ordered with its address and an SSH
credential (``provisioning/ssh_adopt.py``), skips ``creating`` and ``booting`` and starts at
``installing_agent``. So this driver lists no regions, plans or instances, and refuses every
call that would act on a machine at a provider: above all ``terminate``, so deleting an
adopted server can never destroy the customer's machine (the workflow does not call it; this
is the second lock on that door). The workflow needs the driver only for the registry's entry
(how the agent is installed, where it enrolls).
"""

from __future__ import annotations

from control_plane.provisioning.providers.base import (
    Instance,
    IssuedKeys,
    Plan,
    Provider,
    ProviderError,
    ProviderNotFound,
    Region,
)

NAME = "ssh"


class AdoptedMachines:
    """``Provider`` for adopted machines: nothing to rent, nothing MailFleet may destroy."""

    name = NAME

    async def regions(self) -> tuple[Region, ...]:
        return ()

    async def plans(self) -> tuple[Plan, ...]:
        return ()

    async def create(
        self,
        name: str,
        region: str,
        plan: str,
        user_data: str,
        ssh_public_key: str,
        issued_keys: IssuedKeys | None = None,
    ) -> Instance:
        raise _refused("ordered: it exists already (give its address when adopting it)")

    async def get(self, instance_id: str) -> Instance:
        raise ProviderNotFound("an adopted machine has no instance at a provider")

    async def list(self) -> tuple[Instance, ...]:
        return ()

    async def terminate(self, instance_id: str) -> None:
        raise _refused("terminated: it is the customer's")

    async def boot_failure(self, instance_id: str) -> str | None:
        return None

    async def resize(self, instance_id: str, plan: str) -> Instance:
        raise _refused("resized by MailFleet")

    async def confirm_resize(self, instance_id: str) -> Instance:
        raise _refused("resized by MailFleet")

    async def revert_resize(self, instance_id: str) -> Instance:
        raise _refused("resized by MailFleet")

    async def list_ips(self, instance_id: str) -> tuple[str, ...]:
        return ()

    async def add_ip(self, instance_id: str) -> str:
        raise _refused("given addresses by MailFleet")

    async def remove_ip(self, instance_id: str, ip: str) -> None:
        raise _refused("given addresses by MailFleet")

    async def set_reverse_dns(self, instance_id: str, ip: str, hostname: str) -> None:
        raise _refused("given reverse DNS by MailFleet (its owner sets it)")


def _refused(what: str) -> ProviderError:
    return ProviderError(f"an adopted machine is not {what}")


def _implements_the_interface(driver: AdoptedMachines) -> Provider:
    return driver  # mypy checks the Protocol here
