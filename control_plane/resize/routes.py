"""HTTP routes of control_plane.resize (thin over its service)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["resize"])
