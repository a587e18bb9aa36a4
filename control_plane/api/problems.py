"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from control_plane.errors import MailFleetError

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger(__name__)


class FieldError(BaseModel):
    field: str = Field(description="Where the bad value is, e.g. body.name or query.limit.")
    message: str


class Problem(BaseModel):
    """The one error shape of the API."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": title}
    for code, title in (
        (400, "Malformed request"),
        (401, "Missing or invalid API key"),
        (403, "The key's scope does not allow this"),
        (404, "No such object (or another tenant's)"),
        (409, "Conflicts with existing state"),
        (422, "Invalid input; errors name each field"),
    )
}


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        title=title, status=status, detail=detail, instance=request.url.path, errors=errors or []
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``body.repository_env.PATH`` for a refused map key (pydantic appends ``[key]``)."""
    return ".".join(str(part) for part in loc if part != "[key]") or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    if any(error.get("type") == "json_invalid" for error in raw):
        message = next(
            e.get("ctx", {}).get("error", "") for e in raw if e["type"] == "json_invalid"
        )
        return problem_response(
            request,
            400,
            "Malformed request",
            f"request body is not valid JSON: {message}",
            [FieldError(field="body", message="invalid JSON")],
        )
    sent_as = _not_json(request)
    if sent_as is not None and any(e["loc"][:1] == ("body",) for e in raw):
        message = f"send the body as JSON with Content-Type: application/json (not {sent_as})"
        return problem_response(
            request, 422, "Invalid input", message, [FieldError(field="body", message=message)]
        )
    errors = [FieldError(field=_field_path(tuple(e["loc"])), message=e["msg"]) for e in raw]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem_response(request, 422, "Invalid input", detail, errors)


def _not_json(request: Request) -> str | None:
    """The media type a body came as when it is not JSON (``curl -d`` sends a form); FastAPI
    then validates the raw bytes and its errors would not say what was wrong."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return None  # FastAPI reads a body without a type as JSON
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return None
    return media_type


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MailFleetError)
    errors = [FieldError(field=exc.field, message=exc.detail)] if exc.field else []
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return problem_response(request, exc.status, exc.title, exc.detail, errors, headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
    return problem_response(
        request, exc.status_code, title, str(exc.detail), headers=dict(exc.headers or {})
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(request, 500, "Internal error", "an unexpected error occurred")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(MailFleetError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
