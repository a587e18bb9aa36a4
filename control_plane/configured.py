"""Settings-derived rules for work that arrives without settings (agent command results).

``serve`` configures them once at start; until then (a CLI, a test) the environment's
settings apply. One holder serves every feature that judges results this way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from control_plane.settings import Settings

T = TypeVar("T")


class Configured(Generic[T]):
    """A value built from settings: ``configure`` sets it, ``current`` reads it."""

    def __init__(self, build: Callable[[Settings], T]) -> None:
        self._build = build
        self.value: T | None = None

    def configure(self, settings: Settings) -> None:
        self.value = self._build(settings)

    def current(self) -> T:
        if self.value is None:
            self.value = self._build(Settings())
        return self.value
