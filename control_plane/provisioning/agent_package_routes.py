"""``GET /agent/install.sh`` and ``GET /agent/wheels/{name}``: the agent package VPSs install.

No key: a VPS being set up has none, and nothing here is secret (MailFleet's agent and public
wheels). Outside the OpenAPI document, as it is for machines, not API clients. A file is
found only by its name in the wheelhouse's list (``Wheelhouse.path_of``), never by a path
built from the request, so nothing else on the control plane's disk can be named.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from control_plane.errors import NotFound, Unavailable
from control_plane.provisioning.agent_package import AgentPackage, PackageError, Wheelhouse

router = APIRouter(prefix="/agent", tags=["agent package"], include_in_schema=False)
CHECKSUM_HEADER = "X-Checksum-Sha256"


async def _wheelhouse(request: Request) -> Wheelhouse:
    state = request.app.state
    if getattr(state, "agent_package", None) is None:  # one per app, built on first use
        state.agent_package = AgentPackage.from_settings(state.settings)
    try:
        built: Wheelhouse = await state.agent_package.wheelhouse()
    except PackageError as exc:
        raise Unavailable(f"the agent package cannot be built: {exc}") from None
    return built


@router.get("/install.sh")
async def install_script(request: Request) -> Response:
    """The install script, listing every file of the wheelhouse with its SHA-256."""
    wheelhouse = await _wheelhouse(request)
    return Response(
        wheelhouse.script,
        media_type="text/x-shellscript",
        headers={CHECKSUM_HEADER: wheelhouse.script_sha256},
    )


@router.get("/wheels/{name}")
async def wheel(name: str, request: Request) -> FileResponse:
    """One file of the wheelhouse (the install script checks its SHA-256)."""
    wheelhouse = await _wheelhouse(request)
    path = wheelhouse.path_of(name)
    if path is None:
        raise NotFound("agent package file", name, field="path.name")
    return FileResponse(
        path,
        media_type="application/octet-stream",
        headers={CHECKSUM_HEADER: wheelhouse.files[name]},
    )
