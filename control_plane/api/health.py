"""Liveness and readiness, for load balancers and orchestrators (no key needed)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)
CHECK_TIMEOUT_SECONDS = 5.0


class Liveness(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz")
async def healthz() -> Liveness:
    """The process is up and serving."""
    return Liveness(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers and Vault is unsealed."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app.state.db.ping(), CHECK_TIMEOUT_SECONDS)
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; the reason is logged
        log.warning("readiness: database check failed: %s", type(exc).__name__)
        checks["database"] = "unavailable"
    try:
        ready = await asyncio.wait_for(request.app.state.vault.is_ready(), CHECK_TIMEOUT_SECONDS)
        checks["vault"] = "ok" if ready else "sealed or uninitialised"
    except TimeoutError:
        checks["vault"] = "unavailable"
    ok = all(value == "ok" for value in checks.values())
    body = Readiness(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
