"""The price catalog (admins set prices; everyone reads them)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/prices", tags=["costs"])
