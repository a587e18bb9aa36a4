"""Console forms: fields checked by the API's own request models (a refusal is a 422 page
naming the field; nothing changes), and changes made as the API makes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.context import RequestContext
from control_plane.errors import MailFleetError
from control_plane.web.console import Console, PageError, acting_as, not_found, require_csrf

M = TypeVar("M", bound=BaseModel)


def blank_to_none(value: str | None) -> str | None:
    """An empty text field means "not given", as an absent JSON field does to the API."""
    return value.strip() or None if value is not None else None


def parse(model: type[M], **values: Any) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "form"
        raise PageError(422, "Invalid input", f"{field}: {first['msg']}") from None


@asynccontextmanager
async def changing(
    request: Request,
    console: Console,
    csrf_token: str | None,
    method: str,
    api_route: str,
    status: int,
) -> AsyncIterator[tuple[RequestContext, AsyncSession]]:
    """A form's change: audited as the API route that makes the same change (a refusal
    too, a missing CSRF token included), in one transaction; a service's refusal (another
    tenant's object: 404) is a page."""
    ctx = acting_as(request, console, method, api_route, status)
    require_csrf(request, csrf_token, console.csrf)
    try:
        async with ctx.session() as session:
            yield ctx, session
    except MailFleetError as exc:
        raise not_found(exc) from None
