"""Which providers this control plane offers, and what their machines need to enroll.

``manual`` is always offered (a VPS the customer made, enrolled by join token), and so is
``ssh`` unless ``MAILFLEET_SSH_ADOPTION`` is off (a machine the customer has, adopted:
MailFleet installs its agent over SSH with the credential it was given, ``ssh_adopt.py``);
neither is rented, and MailFleet never destroys
either (``OWNED_BY_CUSTOMER``). ``local``
is offered when ``MAILFLEET_LOCAL_PROVIDER`` is on. ``hostwinds`` is offered once its
account is configured in Vault at ``providers/hostwinds`` (``api_key``, ``template``,
optional ``base_url``, optional ``regions`` as ``id=Name`` pairs separated by commas, used
only when ``get_locations`` is refused, optional ``bootstrap``): the key never passes through
the environment, and a change is picked up without a restart.

``bootstrap`` is how a provider's machines get their agent: ``ssh`` (installed over SSH once
the VPS runs; Hostwinds' default, as it documents no user data) or ``cloud-init`` (user data,
for providers and templates that document it: Hostwinds' with ``bootstrap = cloud-init`` in
its account or ``MAILFLEET_HOSTWINDS_USER_DATA``; the local provider's unless
``MAILFLEET_LOCAL_PROVIDER_BOOT=ssh``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from control_plane.errors import InvalidInput
from control_plane.provisioning.bootstrap import AgentInstall, Bootstrap
from control_plane.provisioning.providers.adopted import AdoptedMachines
from control_plane.provisioning.providers.base import Plan, Provider, ProviderError, Region
from control_plane.provisioning.providers.hostwinds import (
    DEFAULT_BASE_URL,
    HostwindsProvider,
    HostwindsSettings,
)
from control_plane.provisioning.providers.local import LocalProvider, LocalSettings
from control_plane.settings import Settings, SettingsError, parse_host_port, parse_plan_prices
from control_plane.vault.client import Vault, secret_path

log = logging.getLogger(__name__)

MANUAL = "manual"
ADOPTED = AdoptedMachines.name  # "ssh"
# The customer's own machines: no provider rents, resizes, readdresses or destroys them.
OWNED_BY_CUSTOMER = frozenset({MANUAL, ADOPTED})
HOSTWINDS_SECRET = secret_path("providers", "hostwinds")
CATALOG_TTL = 600.0  # seconds a provider's regions and plans are trusted


class UnknownProvider(InvalidInput):
    """Not a provider this control plane offers (or no longer offers)."""


@dataclass(frozen=True)
class ProviderEntry:
    """A driver plus what its machines need: how to install the agent, where to reach us."""

    provider: Provider
    install: AgentInstall
    gateway_address: str
    enroll_address: str
    bootstrap: Bootstrap = "cloud-init"


@dataclass
class Catalog:
    regions: tuple[Region, ...]
    plans: tuple[Plan, ...]
    fetched: float


class ProviderRegistry:
    """Builds drivers from settings and Vault; one per process, closed with ``aclose``."""

    def __init__(self, settings: Settings, vault: Vault) -> None:
        self.settings = settings
        self.vault = vault
        self.local: LocalProvider | None = None
        if settings.local_provider:
            try:
                self.local = LocalProvider(local_settings(settings))
            except ValueError as exc:
                raise SettingsError(f"MAILFLEET_LOCAL_PROVIDER_*: {exc}") from None
        self._hostwinds: tuple[str, HostwindsProvider] | None = None
        self._adopted = AdoptedMachines()
        self._catalogs: dict[str, Catalog] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> list[str]:
        """Get providers ready; returns extra host addresses the gateway must listen on."""
        if self.local is None:
            return []
        await self.local.prepare()
        return [str(self.local.gateway.ip)]

    async def aclose(self) -> None:
        if self._hostwinds is not None:
            await self._hostwinds[1].aclose()
            self._hostwinds = None

    async def names(self) -> list[str]:
        names = [MANUAL, ADOPTED] if self.settings.ssh_adoption else [MANUAL]
        if self.local is not None:
            names.append("local")
        if await self.vault.get(HOSTWINDS_SECRET) is not None:
            names.append("hostwinds")
        return names

    async def get(self, name: str, field: str = "body.provider") -> ProviderEntry:
        if name == "local" and self.local is not None:
            host = str(self.local.gateway.ip)
            return ProviderEntry(
                provider=self.local,
                install=self._local_install(host),
                gateway_address=f"{host}:{parse_host_port(self.settings.grpc_addr)[1]}",
                enroll_address=f"{host}:{parse_host_port(self.settings.enroll_addr)[1]}",
                bootstrap=self.settings.local_provider_boot,
            )
        if name == ADOPTED and self.settings.ssh_adoption:
            return self._remote(self._adopted, "ssh")
        if name == "hostwinds":
            driver = await self._hostwinds_driver()
            if driver is not None:
                # User data is sent exactly when the account's bootstrap is cloud-init.
                bootstrap: Bootstrap = "cloud-init" if driver.settings.send_user_data else "ssh"
                return self._remote(driver, bootstrap)
        offered = ", ".join(await self.names())
        raise UnknownProvider(f"unknown provider {name!r} (offered: {offered})", field=field)

    async def check_order(self, name: str, region: str | None, plan: str | None) -> Plan:
        """The catalog's plan of an order; an unknown provider, region or plan is refused
        (422 naming the field)."""
        await self.get(name)
        if region is None:
            raise InvalidInput(f"a region is required for provider {name!r}", field="body.region")
        if plan is None:
            raise InvalidInput(f"a plan is required for provider {name!r}", field="body.plan")
        try:
            catalog = await self.catalog(name)
        except ProviderError as exc:
            raise InvalidInput(
                f"provider {name} cannot list its regions and plans now: {exc.message}",
                field="body.provider",
            ) from None
        if region not in {r.id for r in catalog.regions}:
            known = ", ".join(r.id for r in catalog.regions)
            raise InvalidInput(
                f"unknown region {region!r} for {name} (offered: {known})", field="body.region"
            )
        chosen = next((p for p in catalog.plans if p.id == plan), None)
        if chosen is None:
            known = ", ".join(p.id for p in catalog.plans)
            raise InvalidInput(
                f"unknown plan {plan!r} for {name} (offered: {known})", field="body.plan"
            )
        return chosen

    async def catalog(self, name: str) -> Catalog:
        """Regions and plans, cached for ``CATALOG_TTL`` (plans cost a rate-limited call)."""
        provider = (await self.get(name)).provider
        cached = self._catalogs.get(name)
        if cached is not None and time.monotonic() - cached.fetched < CATALOG_TTL:
            return cached
        catalog = Catalog(await provider.regions(), await provider.plans(), time.monotonic())
        self._catalogs[name] = catalog
        return catalog

    def _remote(self, provider: Provider, bootstrap: Bootstrap) -> ProviderEntry:
        """Machines MailFleet does not build itself get the agent by pip, or start the one
        already on them (``MAILFLEET_PREINSTALLED_AGENT``: an image built with it)."""
        preinstalled = self.settings.preinstalled_agent
        install = (
            AgentInstall.preinstalled(str(preinstalled))
            if preinstalled is not None
            else self._served_or_pip()
        )
        return ProviderEntry(
            provider=provider,
            install=install,
            gateway_address=self.settings.advertised_gateway,
            enroll_address=self.settings.advertised_enroll,
            bootstrap=bootstrap,
        )

    def _local_install(self, host: str) -> AgentInstall:
        """This host's own agent, or the package served on the bridge (``package``)."""
        if self.settings.local_provider_agent == "package":
            return AgentInstall.served(
                f"http://{host}:{parse_host_port(self.settings.api_addr)[1]}"
            )
        return AgentInstall.preinstalled(str(self._agent_command()))

    def _served_or_pip(self) -> AgentInstall:
        """The package this control plane serves where VPSs can reach it, else pip."""
        if self.settings.api_advertise_url is not None:
            return AgentInstall.served(self.settings.api_advertise_url)
        return AgentInstall.pip(self.settings.agent_package)

    def _agent_command(self) -> Path:
        configured = self.settings.local_provider_agent_command
        if configured is not None:
            return configured
        beside = Path(sys.executable).with_name("mailfleet-agent")
        if beside.exists():
            return beside
        found = shutil.which("mailfleet-agent")
        if found is None:
            raise ProviderError("mailfleet-agent is not installed on this host")
        return Path(found)

    async def _hostwinds_driver(self) -> HostwindsProvider | None:
        config = await self.vault.get(HOSTWINDS_SECRET)
        if config is None:
            return None
        fingerprint = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        async with self._lock:
            if self._hostwinds is not None and self._hostwinds[0] == fingerprint:
                return self._hostwinds[1]
            driver = hostwinds_from_secret(config, self.settings.hostwinds_user_data)
            if self._hostwinds is not None:
                await self._hostwinds[1].aclose()
            self._hostwinds = (fingerprint, driver)
            self._catalogs.pop("hostwinds", None)
            log.info("hostwinds account configured from vault")
            return driver


def hostwinds_from_secret(config: dict[str, str], user_data: bool = False) -> HostwindsProvider:
    """The driver for the account in Vault; ``regions`` there is only a fallback for when
    ``get_locations`` is refused, and ``user_data`` is ``MAILFLEET_HOSTWINDS_USER_DATA``: the
    default bootstrap then is ``cloud-init`` (user data sent), else ``ssh``."""
    bootstrap = config.get("bootstrap") or ("cloud-init" if user_data else "ssh")
    if bootstrap not in ("ssh", "cloud-init"):
        raise ProviderError(
            f"providers/hostwinds: bootstrap {bootstrap!r} is neither 'ssh' nor 'cloud-init'"
        )
    regions = []
    for pair in filter(None, (p.strip() for p in config.get("regions", "").split(","))):
        region_id, _, name = pair.partition("=")
        regions.append(Region(region_id.strip(), name.strip() or region_id.strip()))
    return HostwindsProvider(
        config["api_key"],
        template=config.get("template", ""),
        regions=regions,
        settings=HostwindsSettings(
            base_url=config.get("base_url") or DEFAULT_BASE_URL,
            send_user_data=bootstrap == "cloud-init",
        ),
    )


def local_settings(settings: Settings) -> LocalSettings:
    pools = tuple(p.strip() for p in settings.local_provider_pool.split(",") if p.strip())
    return LocalSettings(
        state_dir=settings.local_provider_state_dir,
        bridge=settings.local_provider_bridge,
        bridge_address=settings.local_provider_bridge_address,
        pools=pools,
        prefix=settings.local_provider_prefix,
        extra_path=tuple(p for p in settings.local_provider_extra_path.split(":") if p),
        prices=tuple(parse_plan_prices(settings.local_plan_prices).items()),
        boot=settings.local_provider_boot,
        docker=settings.local_provider_docker,
        docker_images=settings.local_provider_docker_images,
    )
