"""Cost reports: per workspace, server, resource or day; month to date; projection."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/costs", tags=["costs"])
