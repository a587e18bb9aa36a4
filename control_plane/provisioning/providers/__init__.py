"""VPS provider drivers behind one small interface (``base.Provider``)."""

from control_plane.provisioning.providers.base import (
    Instance,
    InstanceStatus,
    Plan,
    Provider,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderUnavailable,
    Region,
)

__all__ = [
    "Instance",
    "InstanceStatus",
    "Plan",
    "Provider",
    "ProviderError",
    "ProviderNotFound",
    "ProviderRateLimited",
    "ProviderUnavailable",
    "Region",
]
