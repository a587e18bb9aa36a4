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
from control_plane.provisioning.providers.local import LocalProvider, LocalSettings

__all__ = [
    "Instance",
    "InstanceStatus",
    "LocalProvider",
    "LocalSettings",
    "Plan",
    "Provider",
    "ProviderError",
    "ProviderNotFound",
    "ProviderRateLimited",
    "ProviderUnavailable",
    "Region",
]
