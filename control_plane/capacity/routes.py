"""HTTP routes of control_plane.capacity (thin over its service)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["capacity"])
