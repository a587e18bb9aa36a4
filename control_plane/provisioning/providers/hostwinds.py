"""Hostwinds Cloud API driver (httpx, own code: no library covers this API).

Only what public sources document is sent by default; each point below names its source.

- One endpoint, ``https://clients.hostwinds.com/cloud/api.php``; every request is a form-encoded
  POST carrying ``action=<name>`` and the API key in the ``API`` field [overview]. Keys are
  allow-listed by IPv4 address, so requests always leave over IPv4 (``ipv4_transport``).
- Failures come back as HTTP 200 with ``[{"result": "error", "action": …, "message": …,
  "ERROR": <code>}]``; the HTTP status alone means nothing. The message is passed on as-is;
  the numeric ``ERROR`` code is not used (it may change without notice) [overview, automation].
- ``add_ssh_key`` takes a ``name`` only and its answer carries the key pair Hostwinds made,
  kept as sensitive [terraform add-ssh-key]; ``delete_ssh_key`` takes a ``name``
  [terraform delete-ssh-key]. The private half found in the answer goes straight to the
  server's path in Vault (``IssuedKeys``), never to a log, an exception or a row.
- ``add_instance`` takes ``template``, ``rid``, ``location_id`` (required) and ``qty``,
  ``keys``, ``srvrname``, ``billingcycle`` (optional) [server-management], the keys as
  ``keys[]=<key name>`` [terraform add-instance]. It only queues the order and answers with
  an "Invoice Paid" entry but no ``serviceid``; the instance is found again by ``srvrname``
  and polled with ``get_instance``. ``location_id`` comes "from get_locations"
  [terraform add-instance variables], so regions are read from ``get_locations``.
- ``get_price_list`` (``managed``, Boolean, default 1, so unmanaged prices need
  ``managed=0``; answers ``rid``, ``name``, ``ram``/``cpu``/``disk``/``bandwidth`` as strings,
  ``monthly``) [upgrade-billing].
- Resizing, as documented [upgrade-billing, automation]: ``check_upgrade_order`` first (only one
  upgrade order may exist), ``upgrade_instance`` (``serviceid``, ``rid``: the order and its
  invoice), ``check_upgrade_order`` again (``orderid``, ``invoiceid``, ``total``,
  ``duedate``), then — only once the invoice is paid — ``upgrade_server``; the instance
  reports ``RESIZED`` until ``confirm_upgrade`` or ``revert_upgrade``. "Do not apply upgrades
  before invoice payment" [automation]: ``upgrade_server`` is sent only when the order's
  answer reports the invoice paid (the "Invoice Paid" entry ``add_instance``'s documented
  answer carries) or nothing is due; otherwise the resize waits, retrying, and says which
  invoice to pay.
- ``get_instance(s)``, ``terminate``, "A valid serviceid is required." [server-management];
  ``get_instance_ips``, ``delete_ip`` (not the main one), ``set_rdns`` (``ip``, ``rdns``)
  [networking]; 2 requests/s, at most 3 retries with exponential backoff, circuit breaker
  [automation].

Sources (read for facts, the code here is our own):

- [overview], [server-management], [upgrade-billing], [networking], [automation]:
  https://github.com/penguinmails/penguinmails.github.io, branch main,
  ``docs/implementation-technical/api/hostwinds/{overview,server-management,upgrade-billing,
  networking,automation-best-practices}.md`` (published under
  https://penguinmails.github.io/docs/implementation-technical/api/hostwinds/); they point to
  the official reference, https://developers.hostwinds.com/cloud/.
- [terraform …]: the same company's MVP, https://github.com/Israel-Laguan/penguinmails-mvp,
  ``scripts/terraform/add-ssh-key/main.tf`` (``action=add_ssh_key&name=…``, the answer saved
  as ``sensitive_content``), ``scripts/terraform/add-instance/main.tf`` (``template``,
  ``rid``, ``qty=1``, ``keys[]``, ``srvrname``, ``billingcycle``, ``location_id``),
  ``scripts/terraform/add-instance/variables.tf`` ("Location ID from get_locations"),
  ``scripts/terraform/delete-ssh-key/main.tf`` (``action=delete_ssh_key&name=…``); read at
  commits 01cc93d03816b78dcd702b068ba91501c72f796b and d81bbe0792a0bec09e0e2314a4cb9dee32aef132.
- Public client code cross-checking answer shapes (found through a code index that does not
  name the repositories, so cited by content): PHP scripts reading ``get_instance_ips`` as
  ``{"success": {"IP Addresses": [{"ip": …}]}}``; Python tools reading ``get_instance`` as
  ``{"success": {…, "status": "ACTIVE"}}`` and noting that it carries the root ``password``
  and ``configkey`` (so answers are never logged), that an unknown action answers
  ``"Invalid Action."`` and a refused key ``"Not Authorized!"``.

Not verified against any source (kept in one place so a live test can settle them):
- behind settings, off by default (README, "Hostwinds: what is not verified"):
  ``add_instance`` taking cloud-init ``user_data`` (``HostwindsSettings.send_user_data``,
  ``MAILFLEET_HOSTWINDS_USER_DATA``); the action adding an IP (``add_ip``, assumed from the
  documented ``delete_ip``; ``MAILFLEET_HOSTWINDS_UNVERIFIED_ACTIONS``).
- read tolerantly, since only the request is documented: where ``add_ssh_key``'s answer puts
  the key (any PEM private key in it is taken); ``get_locations``' answer (records with
  ``id``/``name`` or an id → name object; the typed-in ``regions`` are a fallback only when
  it is refused or unreadable); whether an upgrade order's answer carries "Invoice Paid" as
  ``add_instance``'s does (if not, resizes wait for a payment made at Hostwinds).
- Hostwinds' rate-limit answer (HTTP 429 and error bodies saying "rate limit" / "too many
  requests" are both treated as such); the wording of "key name already exists";
  ``product_id`` naming the plan's ``rid``; the currency (USD); the unit of
  ``get_price_list``'s ``bandwidth`` (read as GB unless it names TB); status names besides
  ACTIVE and RESIZED (an unknown one means "not ready yet", see ``map_status``).

The API key comes from the caller (read from Vault), is sent only in the POST body, and is
kept out of reprs, logs and exception text (Hostwinds' messages are scrubbed of it too).
"""

from __future__ import annotations

import asyncio
import builtins
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from control_plane.provisioning.providers import hostwinds_responses as responses
from control_plane.provisioning.providers.base import (
    Instance,
    IssuedKeys,
    Plan,
    Provider,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderUnavailable,
    Region,
)
from control_plane.provisioning.providers.resilience import (
    CircuitBreaker,
    TokenBucket,
    backoff_delay,
)

# httpx (and the CLI it brings: click, rich, pygments) loads on first use, not with serve.
if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_BASE_URL = "https://clients.hostwinds.com/cloud/api.php"
ACTION_ADD_IP = "add_ip"  # unverified, see the module docstring
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.I)
Params = Mapping[str, str | Sequence[str]]


@dataclass(frozen=True)
class HostwindsSettings:
    """Tunables; the defaults suit the real API, tests shrink the times."""

    base_url: str = DEFAULT_BASE_URL
    timeout: float = 30.0  # seconds, per request
    requests_per_second: float = 2.0
    max_attempts: int = 4  # first try + 3 retries
    backoff_base: float = 0.5
    backoff_cap: float = 10.0
    failure_threshold: int = 5  # consecutive failures that open the circuit
    cooldown: float = 30.0  # seconds the circuit stays open
    lookup_timeout: float = 30.0  # how long to look for the effect of an unanswered order
    lookup_interval: float = 2.0
    billing_cycle: str = "monthly"
    currency: str = "USD"
    send_user_data: bool = False  # unverified: no source shows add_instance taking user_data


def ipv4_transport() -> httpx.AsyncHTTPTransport:
    """Hostwinds allow-lists API keys by IPv4 address: binding our side to 0.0.0.0 makes
    every request leave over IPv4, even where the host name resolves to IPv6 first."""
    import httpx

    return httpx.AsyncHTTPTransport(local_address="0.0.0.0")  # noqa: S104 (a source address)


@dataclass(frozen=True)
class _Ordered(Generic[T]):
    """How an order went: Hostwinds' answer, or (answer lost) the effect found instead."""

    answer: Any = None
    found: T | None = None


class _OutcomeUnknown(ProviderError):
    """The request may have reached Hostwinds and been acted on, but no answer came back."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class _ApiKey:
    """Holds the key so that printing the driver, or its attributes, never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        return text.replace(self._value, "***") if self._value else text

    def __repr__(self) -> str:
        return "<api key>"

    __str__ = __repr__


class HostwindsProvider:
    """The ``Provider`` interface over the Hostwinds Cloud API, for one account (API key).

    One instance per account and process: the rate limiter and circuit breaker are shared by
    every call made through it. Close it with ``aclose`` (or ``async with``).
    """

    name = "hostwinds"

    def __init__(
        self,
        api_key: str,
        *,
        template: str,
        regions: Sequence[Region],
        settings: HostwindsSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        import httpx

        if not api_key:
            raise ValueError("a Hostwinds API key is required")
        self._key = _ApiKey(api_key)
        self._template = template
        self._regions = tuple(regions)
        self.settings = settings or HostwindsSettings()
        self._http = httpx.AsyncClient(
            transport=transport or ipv4_transport(),
            timeout=self.settings.timeout,
            headers={"Accept": "application/json", "User-Agent": "mailfleet"},
        )
        self._bucket = TokenBucket(self.settings.requests_per_second)
        self.breaker = CircuitBreaker(
            "hostwinds", self.settings.failure_threshold, self.settings.cooldown
        )

    def __repr__(self) -> str:
        return f"HostwindsProvider(base_url={self.settings.base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> HostwindsProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the interface -------------------------------------------------------------------

    async def regions(self) -> tuple[Region, ...]:
        """The locations ``get_locations`` lists (``add_instance``'s ``location_id`` comes
        from it); the typed-in regions only when that action is refused or unreadable."""
        try:
            found = responses.parse_locations(await self._call("get_locations"))
        except ProviderError as exc:
            if exc.retryable or not self._regions:
                raise
            log.warning("hostwinds get_locations refused (%s): configured regions", exc.message)
            return self._regions
        if found:
            return found
        if self._regions:
            log.warning("hostwinds get_locations listed nothing readable: configured regions")
            return self._regions
        raise ProviderError("Hostwinds get_locations listed no location MailFleet can read")

    async def plans(self) -> tuple[Plan, ...]:
        """The unmanaged plans' prices: ``get_price_list`` defaults to managed ones
        (``managed``, Boolean, default 1), which MailFleet does not order."""
        body = await self._call("get_price_list", {"managed": "0"})
        return responses.parse_plans(body, self.settings.currency)

    async def create(
        self,
        name: str,
        region: str,
        plan: str,
        user_data: str,
        ssh_public_key: str,
        issued_keys: IssuedKeys | None = None,
    ) -> Instance:
        """``add_instance`` with the documented fields only, the key Hostwinds issued under
        the instance's name in ``keys[]``. ``ssh_public_key`` is not sent (``add_ssh_key``
        takes no key); ``user_data`` only with ``send_user_data`` (unverified)."""
        if not name.strip():
            raise ValueError("an instance name is required")
        existing = await self._find_by_name(name)
        if existing is not None:
            log.info("hostwinds: instance %s already exists as %s", name, existing.id)
            return existing
        key_name = await self._ensure_ssh_key(name, issued_keys)
        params: dict[str, str | Sequence[str]] = {
            "template": self._template,
            "rid": plan,
            "location_id": region,
            "srvrname": name,
            "qty": "1",
            "billingcycle": self.settings.billing_cycle,
            "keys[]": [key_name],
        }
        if self.settings.send_user_data:
            params["user_data"] = user_data
        ordered = await self._order("add_instance", params, lambda: self._find_by_name(name))
        found = ordered.found
        if found is None:
            found = await self._look_for(lambda: self._find_by_name(name))
        if found is None:
            raise ProviderError(
                f"Hostwinds accepted instance {name} but does not list it yet", retryable=True
            )
        return found

    async def get(self, instance_id: str) -> Instance:
        body = await self._call("get_instance", {"serviceid": _service_id(instance_id)})
        return responses.parse_instance(responses.unwrap(body))

    async def list(self) -> tuple[Instance, ...]:
        return responses.parse_instances(await self._call("get_instances"))

    async def terminate(self, instance_id: str) -> None:
        """Terminate, then delete the SSH key issued under the instance's name."""
        try:
            name = (await self.get(instance_id)).name
            await self._call("terminate", {"serviceid": _service_id(instance_id)})
        except ProviderNotFound:
            log.info("hostwinds: instance %s already gone", instance_id)
            return
        if name:
            await self._delete_ssh_key(name)

    async def boot_failure(self, instance_id: str) -> str | None:
        return None  # the API shows no boot output; a failed boot ends at the enroll deadline

    async def resize(self, instance_id: str, plan: str) -> Instance:
        """Order → invoice → ``check_upgrade_order`` → ``upgrade_server`` (only once the
        invoice is paid) → RESIZED; ``confirm_resize``/``revert_resize`` finish it.

        An unpaid invoice, or an order already there (which may be unpaid: nothing documented
        says), raises a retryable error naming the invoice: the resize step tries again until
        its deadline, and an upgrade paid and applied at Hostwinds meanwhile shows as RESIZED.
        """
        service = {"serviceid": _service_id(instance_id)}
        pending = await self._upgrade_order(instance_id)
        if pending is not None:
            raise _unpaid(instance_id, pending, "an upgrade order is already open")

        async def order_placed() -> Mapping[str, Any] | None:
            return await self._upgrade_order(instance_id)

        async def upgrade_started() -> bool | None:
            status = (await self.get(instance_id)).status
            return True if status in ("resizing", "resize_pending_confirm") else None

        ordered = await self._order("upgrade_instance", {**service, "rid": plan}, order_placed)
        order = ordered.found or await self._upgrade_order(instance_id)
        if order is None:
            raise ProviderError(
                f"Hostwinds accepted the upgrade of {instance_id} to {plan} but "
                "check_upgrade_order shows no order yet",
                retryable=True,
            )
        if not (responses.invoice_paid(ordered.answer) or _nothing_due(order)):
            raise _unpaid(instance_id, order, "its answer does not report the invoice paid")
        await self._order("upgrade_server", service, upgrade_started)
        return await self.get(instance_id)

    async def confirm_resize(self, instance_id: str) -> Instance:
        return await self._finish_upgrade("confirm_upgrade", instance_id)

    async def revert_resize(self, instance_id: str) -> Instance:
        return await self._finish_upgrade("revert_upgrade", instance_id)

    async def list_ips(self, instance_id: str) -> tuple[str, ...]:
        body = await self._call("get_instance_ips", {"serviceid": _service_id(instance_id)})
        return responses.parse_ips(body)

    async def add_ip(self, instance_id: str) -> str:
        before = set(await self.list_ips(instance_id))

        async def new_address() -> str | None:
            fresh = [ip for ip in await self.list_ips(instance_id) if ip not in before]
            return fresh[0] if fresh else None

        service = {"serviceid": _service_id(instance_id)}
        added = (await self._order(ACTION_ADD_IP, service, new_address)).found
        if added is None:
            added = await self._look_for(new_address)
        if added is None:
            raise ProviderError(
                f"Hostwinds accepted a new IP for {instance_id} but does not list it yet",
                retryable=True,
            )
        return added

    async def remove_ip(self, instance_id: str, ip: str) -> None:
        address = str(ipaddress.ip_address(ip))

        async def gone() -> bool | None:
            return True if address not in await self.list_ips(instance_id) else None

        params = {"serviceid": _service_id(instance_id), "ip": address}
        await self._order("delete_ip", params, gone)

    async def set_reverse_dns(self, instance_id: str, ip: str, hostname: str) -> None:
        address = str(ipaddress.ip_address(ip))
        if not _HOSTNAME.match(hostname):
            raise ValueError(f"not a fully qualified host name: {hostname!r}")
        params = {"serviceid": _service_id(instance_id), "ip": address, "rdns": hostname}
        await self._call("set_rdns", params)

    # -- building blocks -----------------------------------------------------------------

    async def _find_by_name(self, name: str) -> Instance | None:
        matches = [i for i in await self.list() if i.name == name and i.status != "terminated"]
        if len(matches) > 1:
            ids = ", ".join(i.id for i in matches)
            raise ProviderError(f"several Hostwinds instances are named {name}: {ids}")
        return matches[0] if matches else None

    async def _ensure_ssh_key(self, key_name: str, issued_keys: IssuedKeys | None) -> str:
        """The key Hostwinds issues under ``key_name`` (the instance's name), its private half
        kept in ``issued_keys``. A key of that name whose private half was never kept (an
        answer lost, a crash before keeping it) is deleted and issued again."""
        if issued_keys is None:
            raise ProviderError("Hostwinds issues the server's SSH key: nowhere to keep it")
        if await issued_keys.issued(key_name):
            return key_name
        try:
            answer = await self._call("add_ssh_key", {"name": key_name}, idempotent=False)
        except ProviderError as exc:
            if exc.retryable or "already exist" not in exc.message.lower():
                raise
            log.warning("hostwinds: SSH key %s exists but was never kept; issuing anew", key_name)
            await self._delete_ssh_key(key_name)
            answer = await self._call("add_ssh_key", {"name": key_name}, idempotent=False)
        private_key = responses.find_private_key(answer)
        if private_key is None:
            raise ProviderError(f"Hostwinds add_ssh_key answered no private key for {key_name}")
        try:
            await issued_keys.keep(key_name, private_key)
        except ValueError:
            raise ProviderError(
                f"Hostwinds add_ssh_key answered a key MailFleet cannot read for {key_name}"
            ) from None
        return key_name

    async def _delete_ssh_key(self, key_name: str) -> None:
        """Best effort: a key left behind costs nothing and is replaced when reused."""
        try:
            await self._call("delete_ssh_key", {"name": key_name})
        except ProviderError as exc:
            if exc.retryable:
                raise
            log.info("hostwinds: SSH key %s not deleted: %s", key_name, exc.message)

    async def _upgrade_order(self, instance_id: str) -> Mapping[str, Any] | None:
        """The open upgrade order (``check_upgrade_order``), None when there is none."""
        try:
            params = {"serviceid": _service_id(instance_id)}
            body = await self._call("check_upgrade_order", params)
        except ProviderError as exc:
            if exc.retryable:
                raise
            return None
        order = responses.unwrap(body)
        return order if isinstance(order, Mapping) and order else None

    async def _finish_upgrade(self, action: str, instance_id: str) -> Instance:
        async def settled() -> bool | None:
            status = (await self.get(instance_id)).status
            return True if status != "resize_pending_confirm" else None

        await self._order(action, {"serviceid": _service_id(instance_id)}, settled)
        return await self.get(instance_id)

    async def _look_for(self, check: Callable[[], Awaitable[T | None]]) -> T | None:
        """Poll ``check`` until it finds something or ``lookup_timeout`` passes."""
        deadline = time.monotonic() + self.settings.lookup_timeout
        while True:
            found = await check()
            if found is not None or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(self.settings.lookup_interval)

    async def _order(
        self, action: str, params: Params, took_effect: Callable[[], Awaitable[T | None]]
    ) -> _Ordered[T]:
        """Send a non-idempotent action; never re-send it while it may have taken effect.

        When no answer came back (timeout, dropped connection, 5xx), the request may still
        have been carried out: look for its effect first (``took_effect``: e.g. an instance
        with the name we ordered), and send again only if there is none. Returns the answer,
        or (no answer) what ``took_effect`` found.
        """
        attempts = self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return _Ordered(answer=await self._call(action, params, idempotent=False))
            except _OutcomeUnknown as exc:
                log.warning(
                    "hostwinds %s: no answer (%s); checking whether it took effect",
                    action,
                    exc.message,
                )
                found = await self._look_for(took_effect)
                if found is not None:
                    log.info("hostwinds %s: it had taken effect; not sending again", action)
                    return _Ordered(found=found)
                if attempt == attempts:
                    raise ProviderError(
                        f"Hostwinds {action}: no answer after {attempts} attempts ({exc.message})",
                        retryable=True,
                    ) from None
                log.warning("hostwinds %s: no effect found; sending again", action)
        raise AssertionError("unreachable")

    async def _call(
        self, action: str, params: Params | None = None, *, idempotent: bool = True
    ) -> Any:
        """One action with retries for failures that are safe to retry.

        Rate-limit answers and connection failures mean Hostwinds did nothing, so any action
        is retried after them. A lost answer (timeout, 5xx) is retried only for idempotent
        actions; for the others ``_OutcomeUnknown`` goes back to ``_order``.
        """
        attempts = self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return await self._send(action, params or {})
            except ProviderUnavailable:
                raise
            except ProviderError as exc:
                if not exc.retryable or (isinstance(exc, _OutcomeUnknown) and not idempotent):
                    raise
                if attempt == attempts:
                    if isinstance(exc, _OutcomeUnknown):
                        raise ProviderError(exc.message, retryable=True) from None
                    raise
                delay = backoff_delay(
                    attempt, self.settings.backoff_base, self.settings.backoff_cap
                )
                log.warning(
                    "hostwinds %s failed (%s); retry %d/%d in %.2fs",
                    action,
                    exc.message,
                    attempt,
                    attempts - 1,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _send(self, action: str, params: Params) -> Any:
        """Exactly one HTTP request, classified; feeds the circuit breaker."""
        self.breaker.allow()
        try:
            await self._bucket.acquire()
            response = await self._post(action, params)
        except ProviderError:
            self.breaker.failure()
            raise
        except BaseException:
            self.breaker.release()
            raise
        if response.status_code >= 500:
            self.breaker.failure()
            raise _OutcomeUnknown(f"Hostwinds answered HTTP {response.status_code} to {action}")
        self.breaker.success()
        body = _json(response)
        if response.status_code == 429:
            raise ProviderRateLimited(f"Hostwinds {action}: HTTP 429 Too Many Requests")
        message = responses.error_message(body)
        if message is not None:
            raise responses.error_for(self._key.scrub(message), action)
        if response.status_code >= 400:
            raise ProviderError(f"Hostwinds answered HTTP {response.status_code} to {action}")
        if body is None:
            raise _OutcomeUnknown(f"Hostwinds sent an answer to {action} that is not JSON")
        return body

    async def _post(self, action: str, params: Params) -> httpx.Response:
        import httpx

        data: dict[str, str | builtins.list[str]] = {"action": action, "API": self._key.reveal()}
        for field, value in params.items():
            data[field] = value if isinstance(value, str) else builtins.list(value)
        started = time.monotonic()
        try:
            response = await self._http.post(self.settings.base_url, data=data)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached Hostwinds: safe to send again, whatever the action.
            raise ProviderError(
                f"Hostwinds unreachable for {action}: {self._describe(exc)}", retryable=True
            ) from None
        except httpx.TransportError as exc:
            raise _OutcomeUnknown(
                f"Hostwinds {action}: {self._describe(exc)} before an answer"
            ) from None
        log.debug(
            "hostwinds %s: HTTP %d in %.0f ms",
            action,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _describe(self, exc: Exception) -> str:
        detail = self._key.scrub(str(exc))
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _service_id(instance_id: str) -> str:
    """Hostwinds ids are integers; anything else cannot name an instance there."""
    if not instance_id.isdigit():
        raise ProviderNotFound(f"no Hostwinds instance {instance_id!r}")
    return instance_id


def _nothing_due(order: Mapping[str, Any]) -> bool:
    """An order whose invoice ``total`` is zero has nothing to pay."""
    try:
        return Decimal(str(order.get("total")).strip()) == 0
    except (InvalidOperation, ValueError):
        return False


def _unpaid(instance_id: str, order: Mapping[str, Any], why: str) -> ProviderError:
    """The resize waits: ``upgrade_server`` is never sent before the invoice is paid."""
    invoice = order.get("invoiceid", "?")
    total, due = order.get("total", "?"), order.get("duedate", "?")
    return ProviderError(
        f"Hostwinds upgrade order {order.get('orderid', '?')} for instance {instance_id}: "
        f"{why}, so no upgrade is applied before invoice {invoice} ({total}, due {due}) is "
        "paid. Pay it and apply the upgrade at Hostwinds (this resize then sees the instance "
        "RESIZED), or cancel the order there",
        retryable=True,
    )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


if TYPE_CHECKING:

    def _implements_the_interface(driver: HostwindsProvider) -> Provider:
        return driver  # mypy checks HostwindsProvider against the Provider protocol
