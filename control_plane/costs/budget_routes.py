"""Monthly budgets per workspace or tenant, alerted at thresholds."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/budgets", tags=["costs"])
