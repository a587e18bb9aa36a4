"""Provider invoices imported and reconciled against MailFleet's figures (admin)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/costs/invoices", tags=["costs"])
