"""The console's sign-in, sign-out and tenant switch; ``install_console`` adds every console
route and the static files to the app. No console route is in the OpenAPI document."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.status import HTTP_303_SEE_OTHER

from control_plane.api_keys.service import verify_key
from control_plane.db.base import utcnow
from control_plane.errors import NotFound
from control_plane.tenants.service import get_tenant, list_tenants
from control_plane.web import pages, sessions
from control_plane.web.console import (
    STATIC,
    STATIC_URL,
    PageError,
    SignedIn,
    SignInRequired,
    render,
    require_csrf,
    settings_of,
    use_nav,
)
from control_plane.web.sessions import COOKIE, LOGIN_COOKIE

router = APIRouter(include_in_schema=False)
FLEET = "/ui/"
LOGIN = "/ui/login"


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=HTTP_303_SEE_OTHER)


def _set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=sessions.is_https(request, settings_of(request)),
        path="/ui",
    )


@router.get("/")
async def root() -> RedirectResponse:
    return _see(FLEET)


def _login_page(request: Request, status_code: int = 200, error: str | None = None) -> Response:
    token = sessions.new_token()
    response = render(request, "login.html", status_code, csrf=token, error=error)
    _set_cookie(request, response, LOGIN_COOKIE, token)
    return response


@router.get(LOGIN)
async def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post(LOGIN)
async def login(
    request: Request,
    api_key: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """Trade an API key for a session; each refused key counts against the client address."""
    require_csrf(request, csrf_token, request.cookies.get(LOGIN_COOKIE, "") or "\0")
    settings = settings_of(request)
    address = sessions.client_address(request, settings)
    now = utcnow()
    async with request.app.state.db.session() as session:
        wait = await sessions.retry_after(session, address, settings, now)
        if wait is not None:
            minutes = max(1, round(wait / 60))
            message = (
                "Too many failed sign-ins from your address. "
                f"Try again in about {minutes} minute{'s' if minutes != 1 else ''}."
            )
            response = _login_page(request, 429, message)
            response.headers["Retry-After"] = str(wait)
            return response
        key = await verify_key(session, api_key.strip())
        if key is None:
            await sessions.record_failure(session, address, settings, now)
        else:
            token = await sessions.start(session, key, settings, now)
    if key is None:
        return _login_page(request, 401, "That API key is invalid, expired or revoked.")
    response = _see(FLEET)
    _set_cookie(request, response, COOKIE, token)
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.post("/ui/logout")
async def logout(
    request: Request, console: SignedIn, csrf_token: Annotated[str | None, Form()] = None
) -> Response:
    require_csrf(request, csrf_token, console.csrf)
    async with request.app.state.db.session() as session:
        await sessions.end(session, request.state.console_token)
    response = _see(LOGIN)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/ui/tenants")
async def tenant_picker(request: Request, console: SignedIn) -> HTMLResponse:
    if not console.is_admin:
        raise PageError(403, "Refused", "Only an admin key switches tenant.")
    async with console.ctx.session() as session:
        tenants = (await list_tenants(session, None, 500)).items
    return render(request, "tenants.html", console=console, tenants=tenants)


@router.post("/ui/tenant")
async def switch_tenant(
    request: Request,
    console: SignedIn,
    tenant_id: Annotated[str, Form()] = "",
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """An admin shows one tenant's fleet (or, with no tenant, every tenant's)."""
    require_csrf(request, csrf_token, console.csrf)
    if not console.is_admin:
        raise PageError(403, "Refused", "Only an admin key switches tenant.")
    try:
        chosen = uuid.UUID(tenant_id) if tenant_id else None
        async with request.app.state.db.session() as session:
            if chosen is not None:
                await get_tenant(session, chosen, field="form.tenant_id")
            await sessions.switch_tenant(session, console.signed.session, chosen)
    except (ValueError, NotFound):
        raise PageError(422, "No such tenant", f"There is no tenant {tenant_id!r}.") from None
    return _see(FLEET)


async def _to_login(request: Request, exc: Exception) -> Response:
    if request.method == "GET" and request.url.path.startswith("/ui"):
        return _see(LOGIN)
    return render(request, "error.html", 401, title="Signed out", message="Sign in again.")


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return render(request, "error.html", exc.status, title=exc.title, message=exc.message)


def install_console(app: FastAPI) -> None:
    app.mount(STATIC_URL, StaticFiles(directory=STATIC), name="console-static")
    app.add_exception_handler(SignInRequired, _to_login)
    app.add_exception_handler(PageError, _page_error)
    app.include_router(router)
    for page_router in pages.routers():
        app.include_router(page_router)
    use_nav(pages.nav_links())
