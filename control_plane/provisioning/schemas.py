from __future__ import annotations

from decimal import Decimal

from control_plane.provisioning.providers.base import ProviderError
from control_plane.provisioning.registry import OWNED_BY_CUSTOMER, ProviderRegistry
from control_plane.schemas import ResponseModel


class RegionOut(ResponseModel):
    id: str
    name: str


class PlanOut(ResponseModel):
    id: str
    name: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    monthly_price: Decimal
    currency: str


class ProviderOut(ResponseModel):
    name: str
    regions: list[RegionOut]
    plans: list[PlanOut]
    error: str | None = None


async def provider_out(providers: ProviderRegistry, name: str) -> ProviderOut:
    if name in OWNED_BY_CUSTOMER:
        return ProviderOut(name=name, regions=[], plans=[])
    try:
        catalog = await providers.catalog(name)
    except ProviderError as exc:
        return ProviderOut(name=name, regions=[], plans=[], error=exc.message)
    return ProviderOut(
        name=name,
        regions=[RegionOut(id=r.id, name=r.name) for r in catalog.regions],
        plans=[PlanOut(**vars(p)) for p in catalog.plans],
    )
