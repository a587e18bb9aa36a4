"""A contract double of the Hostwinds Cloud API, served over real HTTP on 127.0.0.1.

It follows the public sources the driver cites (see the docstring of
``control_plane/provisioning/providers/hostwinds.py``): one endpoint taking form-encoded
``action=<name>`` plus the key in ``API``; errors as HTTP 200 with ``result: error`` and a
message; ``add_instance`` only queues the order (the instance shows ``BUILD`` until
``create_delay`` has passed, then ``ACTIVE``) and answers "Invoice Paid" first;
``add_ssh_key`` takes a ``name`` and answers with the key pair it made, ``keys[]`` names
keys for ``add_instance``, ``delete_ssh_key`` takes a ``name``; ``get_locations``; one upgrade
order at a time (``check_upgrade_order`` shows ``id``, ``orderid``, ``invoiceid``,
``duedate``, ``total``), ``upgrade_server`` only once its invoice is paid, moving the instance
through ``RESIZE`` to ``RESIZED`` until it is confirmed or reverted; price list (managed
prices unless ``managed`` is 0), IPs, rDNS, terminate. A refused key gets HTTP 401 with
"Not Authorized!", an unknown action "Invalid Action.".

Every action takes only the fields its source lists (``FIELDS``); any other field is refused
with an error body ("Unknown field: …"), so a driver sending an undocumented field fails its
tests. Real Hostwinds may well ignore such a field silently, which is exactly why the double
must not: ``accept_unverified`` (e.g. ``{"add_instance": {"user_data"}}``) lets a test opt in
to an assumption explicitly.

Where the sources are silent the double picks one answer and says so: requests beyond
``rate_limit`` per second (token bucket, burst ``rate_limit``) get an error body saying
"Rate limit exceeded…" with HTTP 200 (or HTTP 429 with ``rate_limit_style="http"``); the
action adding an IP is ``add_ip``; ``add_ssh_key``'s answer carries the private key (OpenSSH
PEM) in ``private_key`` and a taken name answers "An SSH key with this name already
exists."; ``get_locations`` answers ``{"success": [{"id", "name"}]}``; an upgrade order's
invoice (the monthly difference) is paid from the account's ``credit`` when it suffices,
and its answer then starts with "Invoice Paid" as ``add_instance``'s does (``pay_invoice``
and ``apply_upgrade`` stand in for a person paying and applying it at Hostwinds); a managed
plan costs ``MANAGED_SURCHARGE`` more; ``bandwidth`` is a number of GB.

Test hooks: ``authorize`` stands in for what Hostwinds does to the VPS it builds (root's
``authorized_keys`` gets the ``keys[]`` of ``add_instance``): called with the instance's
address and those public keys, it lets a test whose "VPS" is a real machine (a namespace
running sshd, handed out through ``addresses``) authorize them there. ``fail_next`` injects
failures (HTTP 500, error bodies, hangs before or after
the action is carried out, rate-limit answers); ``calls`` records every request's action,
arrival time and outcome.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import secrets
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl

import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

API_PATH = "/cloud/api.php"
FailureKind = Literal["http_500", "error_body", "hang", "hang_after_action", "rate_limited"]
Form = dict[str, list[str]]


class ApiError(Exception):
    """Raised by an action handler; becomes Hostwinds' ``result: error`` body."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class PricePlan:
    rid: int
    name: str
    cpu: int
    ram_gb: int
    disk_gb: int
    monthly: Decimal  # unmanaged
    bandwidth_gb: int = 2000


MANAGED_SURCHARGE = Decimal("10.00")  # the double's choice: managed costs this much more
DEFAULT_PLANS = (
    PricePlan(11, "Unmanaged Linux 1", 1, 2, 50, Decimal("9.99")),
    PricePlan(12, "Unmanaged Linux 2", 2, 4, 75, Decimal("17.99")),
    PricePlan(13, "Unmanaged Linux 3", 4, 8, 150, Decimal("34.99")),
)
DEFAULT_LOCATIONS = {1: "Seattle, WA", 2: "Dallas, TX", 3: "Amsterdam, NL"}
# The fields each action's source lists (besides ``action`` and ``API``); all else is refused.
_SERVICE = frozenset({"serviceid"})
FIELDS: dict[str, frozenset[str]] = {
    "add_instance": frozenset(
        [
            "template",
            "rid",
            "location_id",
            "qty",
            "keys",
            "keys[]",
            "srvrname",
            "billingcycle",
            "cclass",
            "ram",
            "cpu",
            "disk",
            "bandwidth",
        ]
    ),
    "get_instances": frozenset(),
    "get_instance": _SERVICE,
    "terminate": _SERVICE,
    "get_instance_ips": frozenset({"serviceid", "location_id"}),
    "add_ip": _SERVICE,  # the double's assumption, as the driver's
    "delete_ip": frozenset({"serviceid", "ip"}),
    "set_rdns": frozenset({"serviceid", "ip", "rdns", "rdata"}),
    "get_price_list": frozenset({"serviceid", "drive_type", "managed", "disk"}),
    "upgrade_instance": frozenset({"serviceid", "rid", "ram", "cpu", "disk", "bandwidth"}),
    "check_upgrade_order": _SERVICE,
    "upgrade_server": frozenset({"serviceid", "disk", "upgrade_drive_type"}),
    "confirm_upgrade": _SERVICE,
    "revert_upgrade": _SERVICE,
    "add_ssh_key": frozenset({"name"}),
    "delete_ssh_key": frozenset({"name"}),
    "get_locations": frozenset(),
}


@dataclass
class Call:
    action: str
    at: float  # time.monotonic() on arrival
    outcome: str = "pending"


@dataclass
class Failure:
    kind: FailureKind
    actions: Collection[str] | None
    message: str
    hang: float


@dataclass
class FakeInstance:
    serviceid: int
    name: str
    location_id: int
    rid: int
    template: str
    keys: list[str]
    user_data: str
    created_at: float
    ips: list[str]
    ipv6: str
    private_ip: str
    rdns: dict[str, str] = field(default_factory=dict)
    order: dict[str, Any] | None = None  # with "rid" and "paid" besides the documented fields
    resize_started_at: float | None = None
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    configkey: str = field(default_factory=lambda: secrets.token_hex(8))


class HostwindsDouble:
    """State and behaviour of the fake API; ``serve()`` runs it on a free loopback port."""

    def __init__(
        self,
        api_key: str = "hw-test-key",
        *,
        create_delay: float = 0.2,
        resize_delay: float = 0.2,
        rate_limit: float | None = None,
        rate_limit_style: Literal["body", "http"] = "body",
        plans: tuple[PricePlan, ...] = DEFAULT_PLANS,
        locations: dict[int, str] | None = None,
        credit: Decimal = Decimal("1000.00"),
        accept_unverified: Mapping[str, Collection[str]] | None = None,
        addresses: str = "198.51.100.0/24",
        authorize: Callable[[str, list[str]], None] | None = None,
    ) -> None:
        self.api_key = api_key
        self.create_delay = create_delay
        self.resize_delay = resize_delay
        self.rate_limit = rate_limit
        self.rate_limit_style = rate_limit_style
        self.plans = {plan.rid: plan for plan in plans}
        self.locations = dict(locations or DEFAULT_LOCATIONS)
        self.credit = credit
        self.accept_unverified = {k: frozenset(v) for k, v in (accept_unverified or {}).items()}
        self.calls: list[Call] = []
        self.instances: dict[int, FakeInstance] = {}
        self.ssh_keys: dict[str, str] = {}  # name → the public half (authorized_keys line)
        self.url = ""
        self._lock = threading.Lock()
        self._failures: list[Failure] = []
        self._ids = itertools.count(100_001)
        self._orders = itertools.count(500)
        # Where its VPSs "are": the documentation range by default; a test whose workflow
        # then connects to them (the install over SSH) hands out loopback or its namespaces'.
        self._addresses = iter(ipaddress.ip_network(addresses).hosts())  # a /32: a list
        self.authorize = authorize
        self._v6 = itertools.count(1)
        self._tokens = rate_limit or 0.0
        self._refilled = time.monotonic()
        self.app = Starlette(routes=[Route(API_PATH, self._endpoint, methods=["POST"])])
        self._actions: dict[str, Callable[[Form], Any]] = {
            "add_instance": self._add_instance,
            "get_instances": self._get_instances,
            "get_instance": self._get_instance,
            "terminate": self._terminate,
            "get_instance_ips": self._get_instance_ips,
            "add_ip": self._add_ip,
            "delete_ip": self._delete_ip,
            "set_rdns": self._set_rdns,
            "get_price_list": self._get_price_list,
            "upgrade_instance": self._upgrade_instance,
            "check_upgrade_order": self._check_upgrade_order,
            "upgrade_server": self._upgrade_server,
            "confirm_upgrade": self._confirm_upgrade,
            "revert_upgrade": self._revert_upgrade,
            "add_ssh_key": self._add_ssh_key,
            "delete_ssh_key": self._delete_ssh_key,
            "get_locations": self._get_locations,
        }

    # -- test hooks ----------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        kind: FailureKind = "http_500",
        *,
        actions: Collection[str] | None = None,
        message: str = "Internal error, please contact support.",
        hang: float = 2.0,
    ) -> None:
        """The next ``count`` requests (for ``actions``, or any) fail this way."""
        with self._lock:
            self._failures.extend(Failure(kind, actions, message, hang) for _ in range(count))

    def calls_of(self, action: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.action == action]

    def status_of(self, serviceid: int | str) -> str:
        with self._lock:
            return self._status(self.instances[int(serviceid)])

    def rdns_of(self, serviceid: int | str, ip: str) -> str | None:
        with self._lock:
            return self.instances[int(serviceid)].rdns.get(ip)

    def pay_invoice(self, serviceid: int | str) -> None:
        """Someone pays the open upgrade order's invoice at Hostwinds."""
        with self._lock:
            order = self.instances[int(serviceid)].order
            assert order is not None, "no upgrade order"
            order["paid"] = True

    def apply_upgrade(self, serviceid: int | str) -> None:
        """Someone applies a paid upgrade at Hostwinds (what ``upgrade_server`` does)."""
        with self._lock:
            self._upgrade_server({"serviceid": [str(serviceid)]})

    @contextmanager
    def serve(self, host: str = "127.0.0.1") -> Iterator[HostwindsDouble]:
        """Run on ``host`` (loopback) in a background thread; stopped and joined on exit."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            loop="asyncio",
            http="h11",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="hostwinds-double", daemon=True
        )
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the Hostwinds double did not start")
                time.sleep(0.01)
            where = f"[{host}]" if family == socket.AF_INET6 else host
            self.url = f"http://{where}:{port}{API_PATH}"
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()

    # -- HTTP ----------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> JSONResponse:
        form = await _form(request)
        action = (form.get("action") or [""])[0]
        call = Call(action, time.monotonic())
        with self._lock:
            self.calls.append(call)
            failure = self._take_failure(action)
            limited = failure is None and self._rate_limited(call.at)
        if failure is not None:
            call.outcome = f"injected:{failure.kind}"
            return await self._inject(failure, action, form)
        if limited:
            call.outcome = "rate_limited"
            return self._rate_limit_answer(action)
        if (form.get("API") or [""])[0] != self.api_key:
            call.outcome = "unauthorized"
            body = [{"result": "error", "action": "Authorization", "message": "Not Authorized!"}]
            return JSONResponse(body, status_code=401)
        response = self._dispatch(action, form)
        call.outcome = "error" if _is_error(response) else "ok"
        return response

    def _dispatch(self, action: str, form: Form) -> JSONResponse:
        handler = self._actions.get(action)
        if handler is None:
            return _error(None, "Invalid Action.", "6734")
        allowed = FIELDS[action] | self.accept_unverified.get(action, frozenset())
        unknown = sorted(set(form) - allowed - {"action", "API"})
        if unknown:
            return _error(_title(action), f"Unknown field: {', '.join(unknown)}", "400")
        try:
            with self._lock:
                return JSONResponse(handler(form))
        except ApiError as exc:
            return _error(_title(action), exc.message, exc.code)

    async def _inject(self, failure: Failure, action: str, form: Form) -> JSONResponse:
        if failure.kind == "http_500":
            return JSONResponse({"error": "Internal Server Error"}, status_code=500)
        if failure.kind == "error_body":
            return _error(_title(action), failure.message, "500100")
        if failure.kind == "rate_limited":
            return self._rate_limit_answer(action)
        if failure.kind == "hang":
            await asyncio.sleep(failure.hang)
            return JSONResponse({"error": "Gateway Timeout"}, status_code=504)
        response = self._dispatch(action, form)  # hang_after_action: done, answer lost
        await asyncio.sleep(failure.hang)
        return response

    def _take_failure(self, action: str) -> Failure | None:
        for index, failure in enumerate(self._failures):
            if failure.actions is None or action in failure.actions:
                return self._failures.pop(index)
        return None

    def _rate_limited(self, now: float) -> bool:
        if not self.rate_limit:
            return False
        self._tokens = min(self.rate_limit, self._tokens + (now - self._refilled) * self.rate_limit)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return False
        return True

    def _rate_limit_answer(self, action: str) -> JSONResponse:
        message = "Rate limit exceeded: too many requests, please try again later."
        status = 429 if self.rate_limit_style == "http" else 200
        return _error(_title(action), message, "429001", status_code=status)

    # -- actions (called with the lock held) ---------------------------------------------

    def _status(self, instance: FakeInstance) -> str:
        now = time.monotonic()
        if instance.resize_started_at is not None:
            done = now - instance.resize_started_at >= self.resize_delay
            return "RESIZED" if done else "RESIZE"
        return "BUILD" if now - instance.created_at < self.create_delay else "ACTIVE"

    def _instance(self, form: Form) -> FakeInstance:
        raw = (form.get("serviceid") or [""])[0]
        instance = self.instances.get(int(raw)) if raw.isdigit() else None
        if instance is None:
            raise ApiError("A valid serviceid is required.", "721334")
        return instance

    def _object(self, instance: FakeInstance) -> dict[str, Any]:
        plan = self.plans[instance.rid]
        status = self._status(instance)
        return {
            "serviceid": instance.serviceid,
            "userid": 4242,
            "location_id": instance.location_id,
            "server_uuid": f"uuid-{instance.serviceid}",
            "password": instance.password,
            "main_ip": instance.ips[0],
            "private_ip": instance.private_ip,
            "ips": list(instance.ips[1:]) or None,
            "upgrade_available": 1,
            "is_suspended": 0,
            "configkey": instance.configkey,
            "ssh_keys": list(instance.keys),
            "hourly": 0,
            "srvrname": instance.name,
            "template_uuid": instance.template,
            "locked": 0,
            "hostname": f"hwsrv-{instance.serviceid}.hostwindsdns.com",
            "product_id": instance.rid,
            "billingcycle": "monthly",
            "product_name": plan.name,
            "status": status,
            "disp_status": status.title(),
            "ip_v6": instance.ipv6,
            "flavor": {"vcpus": plan.cpu, "ram": plan.ram_gb * 1024, "disk": plan.disk_gb},
            "vm_state": {"BUILD": "building", "RESIZED": "resized"}.get(status, "active"),
            "task_state": "resize_migrating" if status == "RESIZE" else None,
            "ram": plan.ram_gb * 1024,
            "cpu": plan.cpu,
            "disk": plan.disk_gb,
            "name": f"hwsrv-{instance.serviceid}",
            "power_state": 1,
        }

    def _add_instance(self, form: Form) -> Any:
        template = (form.get("template") or [""])[0]
        if not template:
            raise ApiError("A valid template is required.")
        location = (form.get("location_id") or [""])[0]
        if not location.isdigit() or int(location) not in self.locations:
            raise ApiError("Location Id is invalid.", "342432")
        rid = (form.get("rid") or [""])[0]
        if not rid.isdigit() or int(rid) not in self.plans:
            raise ApiError("A valid rid is required.")
        keys = form.get("keys[]", [])
        if any(key not in self.ssh_keys for key in keys):
            raise ApiError("SSH key not found.")
        serviceid = next(self._ids)
        self.instances[serviceid] = FakeInstance(
            serviceid=serviceid,
            name=(form.get("srvrname") or [f"Server#{serviceid}"])[0],
            location_id=int(location),
            rid=int(rid),
            template=template,
            keys=list(keys),
            user_data=(form.get("user_data") or [""])[0],
            created_at=time.monotonic(),
            ips=[str(next(self._addresses))],
            ipv6=f"2001:db8::{next(self._v6):x}",
            private_ip=f"10.0.{serviceid % 250}.{serviceid % 200 + 2}",
        )
        if self.authorize is not None:
            instance = self.instances[serviceid]
            self.authorize(instance.ips[0], [self.ssh_keys[key] for key in keys])
        invoice = next(self._orders)
        return [
            {"result": "success", "action": "Invoice Paid", "message": f"Invoice #{invoice}"},
            {"result": "success", "action": "Add Instance", "message": "Server is being Created!"},
        ]

    def _get_locations(self, form: Form) -> Any:
        return {"success": [{"id": key, "name": name} for key, name in self.locations.items()]}

    def _get_instances(self, form: Form) -> Any:
        return [self._object(instance) for instance in self.instances.values()]

    def _get_instance(self, form: Form) -> Any:
        return {"success": self._object(self._instance(form))}

    def _terminate(self, form: Form) -> Any:
        instance = self._instance(form)
        del self.instances[instance.serviceid]
        return [{"result": "success", "message": "Instance deleted"}]

    def _get_instance_ips(self, form: Form) -> Any:
        instance = self._instance(form)
        entries = [
            {"ip": ip, "main": "1" if ip == instance.ips[0] else "0", "rdns": instance.rdns.get(ip)}
            for ip in [*instance.ips, instance.ipv6]
        ]
        return {"success": {"IP Addresses": entries}}

    def _add_ip(self, form: Form) -> Any:
        instance = self._instance(form)
        instance.ips.append(str(next(self._addresses)))
        return [{"result": "success", "action": "Add IP", "message": "IP added"}]

    def _owned_ip(self, instance: FakeInstance, form: Form) -> str:
        ip = (form.get("ip") or [""])[0]
        if ip not in instance.ips and ip != instance.ipv6:
            raise ApiError("IP address not found on this service.")
        return ip

    def _delete_ip(self, form: Form) -> Any:
        instance = self._instance(form)
        ip = self._owned_ip(instance, form)
        if ip == instance.ips[0]:
            raise ApiError("Cannot delete the main IP address.")
        instance.ips.remove(ip)
        instance.rdns.pop(ip, None)
        return [{"result": "success", "action": "Delete IP", "message": "IP removed"}]

    def _set_rdns(self, form: Form) -> Any:
        instance = self._instance(form)
        ip = self._owned_ip(instance, form)
        rdns = (form.get("rdns") or [""])[0]
        if not rdns:
            raise ApiError("A valid rdns is required.")
        instance.rdns[ip] = rdns
        return [{"result": "success", "action": "Set rDNS", "message": "rDNS record updated."}]

    def _get_price_list(self, form: Form) -> Any:
        managed = (form.get("managed") or ["1"])[0].lower() not in ("0", "false")
        surcharge = MANAGED_SURCHARGE if managed else Decimal(0)
        entries = {
            str(plan.rid): {
                "id": plan.rid,
                "name": plan.name,
                "ram": str(plan.ram_gb),
                "cpu": str(plan.cpu),
                "disk": str(plan.disk_gb),
                "bandwidth": str(plan.bandwidth_gb),
                "monthly": str(plan.monthly + surcharge),
                "annually": str((plan.monthly + surcharge) * 12),
                "rid": plan.rid,
                "current": 0,
            }
            for plan in self.plans.values()
        }
        return {"success": entries}

    def _upgrade_instance(self, form: Form) -> Any:
        instance = self._instance(form)
        rid = (form.get("rid") or [""])[0]
        if not rid.isdigit() or int(rid) not in self.plans:
            raise ApiError("A valid rid is required.")
        if instance.order is not None:
            raise ApiError("Only one upgrade order is allowed at a time.")
        if self._status(instance) != "ACTIVE":
            raise ApiError("The instance must be active to be upgraded.")
        order = next(self._orders)
        total = max(self.plans[int(rid)].monthly - self.plans[instance.rid].monthly, Decimal(0))
        paid = self.credit >= total
        if paid:
            self.credit -= total
        instance.order = {
            "id": order, "orderid": order, "invoiceid": order, "duedate": "2026-12-31",
            "total": f"{total:.2f}", "rid": int(rid), "paid": paid,
        }  # fmt: skip
        upgraded = {
            "result": "success",
            "action": "Upgrade Instance",
            "message": "Service has been upgraded!",
        }
        if not paid:
            return [upgraded]
        receipt = {"result": "success", "action": "Invoice Paid", "message": f"Invoice #{order}"}
        return [receipt, upgraded]

    def _check_upgrade_order(self, form: Form) -> Any:
        instance = self._instance(form)
        if instance.order is None:
            raise ApiError("No upgrade order found.")
        hidden = ("rid", "paid")
        return {"success": {k: v for k, v in instance.order.items() if k not in hidden}}

    def _upgrade_server(self, form: Form) -> Any:
        instance = self._instance(form)
        if instance.order is None or instance.resize_started_at is not None:
            raise ApiError("No paid upgrade order is waiting for this service.")
        if not instance.order["paid"]:
            raise ApiError(f"Invoice #{instance.order['invoiceid']} is unpaid.")
        instance.resize_started_at = time.monotonic()
        message = f"Server Server#{instance.serviceid} is being upgraded."
        return [{"result": "success", "action": "Upgrade Server", "message": message}]

    def _finish(self, form: Form, *, keep: bool) -> FakeInstance:
        instance = self._instance(form)
        if instance.order is None or self._status(instance) != "RESIZED":
            raise ApiError("The instance is not in RESIZED state.")
        if keep:
            instance.rid = int(instance.order["rid"])
        instance.order = None
        instance.resize_started_at = None
        return instance

    def _confirm_upgrade(self, form: Form) -> Any:
        self._finish(form, keep=True)
        return [{"result": "success", "action": "Confirm Upgrade", "message": "Upgrade Confirmed!"}]

    def _revert_upgrade(self, form: Form) -> Any:
        self._finish(form, keep=False)
        return [{"result": "success", "action": "Revert Upgrade", "message": "Upgrade Reverted!"}]

    def _add_ssh_key(self, form: Form) -> Any:
        name = (form.get("name") or [""])[0]
        if not name:
            raise ApiError("A valid name is required.")
        if name in self.ssh_keys:
            raise ApiError("An SSH key with this name already exists.")
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        self.ssh_keys[name] = public.decode()
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        return {
            "result": "success",
            "action": "Add SSH Key",
            "message": "SSH key created.",
            "private_key": private.decode(),
        }

    def _delete_ssh_key(self, form: Form) -> Any:
        name = (form.get("name") or [""])[0]
        if self.ssh_keys.pop(name, None) is None:
            raise ApiError("SSH key not found.")
        return [{"result": "success", "action": "Delete SSH Key", "message": "SSH key deleted."}]


async def _form(request: Request) -> Form:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    form: Form = {}
    for key, value in parse_qsl((await request.body()).decode(), keep_blank_values=True):
        form.setdefault(key, []).append(value)
    return form


def _title(action: str) -> str:
    return action.replace("_", " ").title()


def _error(
    action: str | None, message: str, code: str | None = None, *, status_code: int = 200
) -> JSONResponse:
    body: dict[str, Any] = {"result": "error"}
    if action:
        body["action"] = action
    body["message"] = message
    if code:
        body["ERROR"] = code
    return JSONResponse([body], status_code=status_code)


def _is_error(response: JSONResponse) -> bool:
    return b'"result":"error"' in bytes(response.body)


@contextmanager
def hostwinds_double(host: str = "127.0.0.1", **options: Any) -> Iterator[HostwindsDouble]:
    """``with hostwinds_double(create_delay=0.1) as api: …`` — ``api.url`` is the endpoint."""
    with HostwindsDouble(**options).serve(host) as double:
        yield double
