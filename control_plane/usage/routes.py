"""HTTP routes of control_plane.usage (thin over its service)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["usage"])
