"""The FastAPI application: routers of every domain behind one error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry

from control_plane import __version__
from control_plane.alerts.routes import ROUTERS as alert_routers
from control_plane.api import health
from control_plane.api.context import ADMIN_SCOPE_EXTENSION, admin_context
from control_plane.api.docs import install_docs
from control_plane.api.problems import PROBLEM_RESPONSES, install_problem_handlers
from control_plane.api_keys.routes import router as api_keys_router
from control_plane.audit.middleware import AuditMiddleware
from control_plane.audit.routes import router as audit_router
from control_plane.backups.routes import router as backups_router
from control_plane.backups.routes import workspace_router as workspace_backups_router
from control_plane.capacity.routes import router as capacity_router
from control_plane.commands.routes import router as commands_router
from control_plane.costs.budget_routes import router as budgets_router
from control_plane.costs.invoice_routes import router as invoices_router
from control_plane.costs.price_routes import router as prices_router
from control_plane.costs.routes import router as costs_router
from control_plane.costs.statement_routes import router as statements_router
from control_plane.db.engine import Database
from control_plane.dns.routes import router as dns_router
from control_plane.dnsbl.routes import router as dnsbl_router
from control_plane.gateway.hub import AgentHub
from control_plane.health.routes import router as health_router
from control_plane.incidents.routes import router as incidents_router
from control_plane.incidents.routes import silences_router, windows_router
from control_plane.ips.routes import router as ips_router
from control_plane.ipswitch.routes import router as ipswitch_router
from control_plane.mail.routes import router as mail_router
from control_plane.mail.stack_routes import router as mail_stack_router
from control_plane.mailstats.routes import router as mailstats_router
from control_plane.metrics.routes import router as metrics_router
from control_plane.provisioning import agent_package_routes
from control_plane.provisioning.registry import ProviderRegistry
from control_plane.provisioning.routes import router as provisioning_router
from control_plane.resize.routes import router as resize_router
from control_plane.servers.routes import router as servers_router
from control_plane.settings import Settings
from control_plane.tenants.routes import router as tenants_router
from control_plane.tls.routes import router as tls_router
from control_plane.usage.routes import router as usage_router
from control_plane.vault.client import Vault
from control_plane.vault.connect import open_vault
from control_plane.vault.pki import AgentPki
from control_plane.web.routes import install_console
from control_plane.workspaces.routes import router as workspaces_router

ROUTERS = (
    tenants_router,
    workspaces_router,
    api_keys_router,
    servers_router,
    provisioning_router,
    commands_router,
    mail_router,
    mail_stack_router,
    backups_router,
    workspace_backups_router,
    dns_router,
    tls_router,
    health_router,
    metrics_router,
    audit_router,
    incidents_router,
    silences_router,
    windows_router,
    *alert_routers,
    ips_router,
    dnsbl_router,
    mailstats_router,
    ipswitch_router,
    usage_router,
    capacity_router,
    resize_router,
    prices_router,
    invoices_router,
    costs_router,
    budgets_router,
    statements_router,
)


def _needs_admin(dependant: Dependant) -> bool:
    return any(dep.call is admin_context or _needs_admin(dep) for dep in dependant.dependencies)


def _mark_admin_routes(router: APIRouter) -> None:
    """Publish each route's required scope in OpenAPI, derived from its dependencies."""
    for route in router.routes:
        if isinstance(route, APIRoute) and _needs_admin(route.dependant):
            route.openapi_extra = {**(route.openapi_extra or {}), ADMIN_SCOPE_EXTENSION: "admin"}


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    vault: Vault | None = None,
    hub: AgentHub | None = None,
    telemetry: CollectorRegistry | None = None,
    providers: ProviderRegistry | None = None,
    wake_workflow: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the app. Resources not passed in are opened from settings for its lifetime.

    Without ``wake_workflow`` (no provisioning runner in this process) new work waits for a
    runner's next poll, which is what a replica serving only the API does.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if database is None:
                app.state.db = Database.from_settings(settings)
                stack.push_async_callback(app.state.db.dispose)
            if vault is None:
                app.state.vault = await stack.enter_async_context(open_vault(settings))
                app.state.pki = AgentPki(app.state.vault, settings.vault_pki_mount)
            if providers is None:
                app.state.providers = ProviderRegistry(settings, app.state.vault)
                stack.push_async_callback(app.state.providers.aclose)
            yield

    app = FastAPI(
        title="MailFleet",
        version=__version__,
        description="Control plane for a company's sending-mail servers.",
        lifespan=lifespan,
        docs_url=None,  # install_docs serves them from packaged files
        redoc_url=None,
    )
    app.state.settings = settings
    if database is not None:
        app.state.db = database
    if vault is not None:
        app.state.vault = vault
        app.state.pki = AgentPki(vault, settings.vault_pki_mount)
        if providers is None:
            app.state.providers = ProviderRegistry(settings, vault)
    if providers is not None:
        app.state.providers = providers
    app.state.wake_workflow = wake_workflow or (lambda: None)
    app.state.hub = hub if hub is not None else AgentHub()  # an empty hub is falsy
    app.state.telemetry_registry = telemetry
    install_problem_handlers(app)
    install_docs(app)
    app.add_middleware(AuditMiddleware)  # refused and failed changes; see control_plane.audit
    app.include_router(health.router)
    app.include_router(agent_package_routes.router)  # no key: for VPSs being set up
    for router in ROUTERS:
        _mark_admin_routes(router)
        app.include_router(router, responses=PROBLEM_RESPONSES)
    install_console(app)  # HTML pages under /ui, outside the OpenAPI document
    return app
