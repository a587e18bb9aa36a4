"""The console's pages, one module an area (fleet, server, domains, usage, costs…).

Every module here is found at start-up, so an area adds its pages without touching the
others. A module has a ``router``; it may also declare

- ``NAV``: links for the top bar (``NavLink``), and
- ``SERVER_SECTIONS``: sections of a server's page (``ServerSection``), each loaded by htmx
  from ``/ui/servers/{server_id}/{slug}`` once the page is shown, so the page itself renders
  fast and one slow section never holds up the rest. A section answers with its inner
  HTML, starting with its ``<h2 id="{slug}-title">``.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from types import ModuleType

from fastapi import APIRouter


@dataclass(frozen=True)
class NavLink:
    label: str
    path: str
    order: int
    admin_only: bool = False


@dataclass(frozen=True)
class ServerSection:
    slug: str  # the section's URL under /ui/servers/{id}/ and its element id
    title: str
    order: int


@cache
def _modules() -> tuple[ModuleType, ...]:
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return tuple(importlib.import_module(f"{__name__}.{name}") for name in names)


def routers() -> list[APIRouter]:
    return [module.router for module in _modules()]


@cache
def nav_links() -> tuple[NavLink, ...]:
    links = [link for module in _modules() for link in getattr(module, "NAV", ())]
    return tuple(sorted(links, key=lambda link: link.order))


@cache
def server_sections() -> tuple[ServerSection, ...]:
    found = [s for module in _modules() for s in getattr(module, "SERVER_SECTIONS", ())]
    return tuple(sorted(found, key=lambda section: section.order))
