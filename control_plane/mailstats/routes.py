"""STUB routes (filled in by the helper that owns this package)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["ips"])
