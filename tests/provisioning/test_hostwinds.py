"""The Hostwinds driver against the contract double, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import itertools
import logging
import traceback
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio

from control_plane.provisioning.providers import (
    Instance,
    InstanceStatus,
    Provider,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderUnavailable,
    Region,
)
from control_plane.provisioning.providers.hostwinds import HostwindsProvider, HostwindsSettings
from control_plane.provisioning.providers.hostwinds_responses import (
    find_private_key,
    map_status,
    parse_instance,
    parse_locations,
)
from control_plane.provisioning.ssh import IssuedAdminKey, delete_server_secrets, read_admin_key
from control_plane.vault.client import Vault
from tests.fakes.hostwinds import DEFAULT_LOCATIONS, HostwindsDouble, hostwinds_double
from tests.support.ports import free_port

API_KEY = "hwk-7f3a9c1e5b2d4f6a8c0e2b4d6f8a1c3e"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests mailfleet@test"
USER_DATA = "#cloud-config\nwrite_files: []\n"
REGIONS = (Region("1", "Seattle, WA"), Region("2", "Dallas, TX"))  # typed in: a fallback
LOCATIONS = tuple(Region(str(key), name) for key, name in DEFAULT_LOCATIONS.items())
FAST = HostwindsSettings(
    timeout=0.3,
    requests_per_second=1000,
    max_attempts=4,
    backoff_base=0.01,
    backoff_cap=0.05,
    failure_threshold=50,
    cooldown=0.3,
    lookup_timeout=0.3,
    lookup_interval=0.05,
)


@pytest.fixture
def api() -> Iterator[HostwindsDouble]:
    with hostwinds_double(api_key=API_KEY, create_delay=0.2, resize_delay=0.2) as double:
        yield double


def driver(
    url: str,
    key: str = API_KEY,
    transport: httpx.AsyncBaseTransport | None = None,
    **settings: object,
) -> HostwindsProvider:
    options = replace(FAST, base_url=url, **settings)
    return HostwindsProvider(
        key, template="debian-12", regions=REGIONS, settings=options, transport=transport
    )


@pytest_asyncio.fixture
async def keys(vault: Vault) -> AsyncIterator[IssuedAdminKey]:
    """Where the driver keeps the keys Hostwinds issues: a server's path in (real) Vault."""
    tenant_id, server_id = uuid.uuid4(), uuid.uuid4()
    yield IssuedAdminKey(vault, tenant_id, server_id)
    await delete_server_secrets(vault, tenant_id, server_id)


@pytest_asyncio.fixture
async def provider(api: HostwindsDouble) -> AsyncIterator[HostwindsProvider]:
    async with driver(api.url) as hostwinds:
        yield hostwinds


async def wait_for(
    provider: Provider, instance_id: str, status: InstanceStatus, within: float = 5.0
) -> Instance:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        instance = await provider.get(instance_id)
        if instance.status == status:
            return instance
        assert asyncio.get_running_loop().time() < deadline, f"still {instance.status}"
        await asyncio.sleep(0.05)


async def running_instance(provider: Provider, keys: IssuedAdminKey, name: str = "mx1") -> Instance:
    created = await provider.create(name, "1", "11", USER_DATA, SSH_KEY, keys)
    return await wait_for(provider, created.id, "running")


async def test_lifecycle(
    api: HostwindsDouble, provider: HostwindsProvider, keys: IssuedAdminKey
) -> None:
    assert await provider.regions() == LOCATIONS  # get_locations, not the typed-in ones
    plans = {plan.id: plan for plan in await provider.plans()}
    assert plans["11"].monthly_price == Decimal("9.99")  # unmanaged (managed=0) price
    assert (plans["12"].vcpus, plans["12"].memory_mb, plans["12"].disk_gb) == (2, 4096, 75)
    assert plans["12"].currency == "USD"
    assert plans["12"].included_gb == 2000

    created = await provider.create("mx1", "1", "11", USER_DATA, SSH_KEY, keys)
    assert (created.name, created.status, created.region, created.plan) == (
        "mx1",
        "creating",
        "1",
        "11",
    )
    stored = api.instances[int(created.id)]
    assert stored.user_data == ""  # not sent: no source documents it
    assert stored.keys == ["mx1"]  # keys[]: the key Hostwinds issued under the name
    pair = await read_admin_key(keys.vault, keys.tenant_id, keys.server_id)
    assert pair is not None and pair.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY")
    assert pair.public_key.startswith(api.ssh_keys["mx1"] + " ")  # the pair the VPS trusts

    instance = await wait_for(provider, created.id, "running")
    assert len(instance.ipv4) == 1 and len(instance.ipv6) == 1
    assert [i.id for i in await provider.list()] == [created.id]

    ips = await provider.list_ips(created.id)
    assert set(ips) == {*instance.ipv4, *instance.ipv6}
    extra = await provider.add_ip(created.id)
    assert extra not in ips and extra in await provider.list_ips(created.id)
    assert extra in (await provider.get(created.id)).ipv4
    await provider.set_reverse_dns(created.id, extra, "mx1.example.com")
    assert api.rdns_of(created.id, extra) == "mx1.example.com"

    resizing = await provider.resize(created.id, "12")
    assert resizing.status in ("resizing", "resize_pending_confirm")
    await wait_for(provider, created.id, "resize_pending_confirm")
    confirmed = await provider.confirm_resize(created.id)
    assert (confirmed.status, confirmed.plan) == ("running", "12")

    await provider.terminate(created.id)
    with pytest.raises(ProviderNotFound):
        await provider.get(created.id)
    assert await provider.list() == ()
    assert api.ssh_keys == {}  # its key went with it
    await provider.terminate(created.id)  # already gone: done


async def test_revert_resize_and_remove_ip(
    api: HostwindsDouble, provider: HostwindsProvider, keys: IssuedAdminKey
) -> None:
    instance = await running_instance(provider, keys)
    await provider.resize(instance.id, "13")
    await wait_for(provider, instance.id, "resize_pending_confirm")
    reverted = await provider.revert_resize(instance.id)
    assert (reverted.status, reverted.plan) == ("running", "11")

    extra = await provider.add_ip(instance.id)
    await provider.remove_ip(instance.id, extra)
    assert extra not in await provider.list_ips(instance.id)
    with pytest.raises(ProviderError, match="Cannot delete the main IP address"):
        await provider.remove_ip(instance.id, instance.ipv4[0])


async def test_create_is_idempotent_by_name(
    api: HostwindsDouble, provider: HostwindsProvider, keys: IssuedAdminKey
) -> None:
    first = await provider.create("mx1", "1", "11", USER_DATA, SSH_KEY, keys)
    again = await provider.create("mx1", "1", "11", USER_DATA, SSH_KEY, keys)
    assert again.id == first.id
    assert len(api.calls_of("add_instance")) == 1
    assert len(api.calls_of("add_ssh_key")) == 1
    other = await provider.create("mx2", "2", "11", USER_DATA, SSH_KEY, keys)
    assert other.id != first.id and other.region == "2"
    assert sorted(api.ssh_keys) == ["mx1", "mx2"]  # one issued key per instance


async def test_a_key_whose_private_half_was_lost_is_issued_anew(
    api: HostwindsDouble, provider: HostwindsProvider, keys: IssuedAdminKey
) -> None:
    """An add_ssh_key answer lost (the name is taken, the private half never kept): the
    key is deleted and issued again, so Vault always holds the key the VPS trusts."""
    api.fail_next(1, "hang_after_action", actions={"add_ssh_key"}, hang=0.6)
    with pytest.raises(ProviderError) as caught:
        await provider.create("mx1", "1", "11", USER_DATA, SSH_KEY, keys)
    assert caught.value.retryable and api.instances == {}
    assert not await keys.issued("mx1")
    created = await provider.create("mx1", "1", "11", USER_DATA, SSH_KEY, keys)
    actions = [c.action for c in api.calls if "ssh_key" in c.action]
    assert actions == ["add_ssh_key", "add_ssh_key", "delete_ssh_key", "add_ssh_key"]
    pair = await read_admin_key(keys.vault, keys.tenant_id, keys.server_id)
    assert pair is not None and pair.public_key.startswith(api.ssh_keys["mx1"] + " ")
    assert api.instances[int(created.id)].keys == ["mx1"]


async def test_the_issued_private_key_is_never_logged(
    api: HostwindsDouble, keys: IssuedAdminKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with driver(api.url) as hostwinds:
        await hostwinds.create("mx1", "1", "11", USER_DATA, SSH_KEY, keys)
    pair = await read_admin_key(keys.vault, keys.tenant_id, keys.server_id)
    assert pair is not None
    secret = pair.private_key.splitlines()[1]
    assert "add_ssh_key" in caplog.text and secret not in caplog.text


async def test_undocumented_fields_are_refused_and_user_data_is_opt_in(
    api: HostwindsDouble, keys: IssuedAdminKey
) -> None:
    """The double refuses fields no source lists, as the driver's tests need; user data is
    sent only with its setting on, against a double told to accept it."""
    async with driver(api.url, send_user_data=True) as hostwinds:
        with pytest.raises(ProviderError, match="Unknown field: user_data") as caught:
            await hostwinds.create("mx1", "1", "11", USER_DATA, SSH_KEY, keys)
    assert not caught.value.retryable and api.instances == {}
    unverified = {"add_instance": {"user_data"}}
    with hostwinds_double(api_key=API_KEY, accept_unverified=unverified) as lenient:
        async with driver(lenient.url, send_user_data=True) as hostwinds:
            created = await hostwinds.create("mx2", "1", "11", USER_DATA, SSH_KEY, keys)
        assert lenient.instances[int(created.id)].user_data == USER_DATA


async def test_an_upgrade_waits_for_its_invoice(keys: IssuedAdminKey) -> None:
    """No upgrade_server before the invoice is paid: the resize says which invoice, and an
    upgrade paid and applied at Hostwinds then shows as RESIZED, confirmed as usual."""
    with hostwinds_double(api_key=API_KEY, credit=Decimal(0), resize_delay=0.1) as api:
        async with driver(api.url) as hostwinds:
            instance = await running_instance(hostwinds, keys)
            for _ in range(2):  # the order placed, then found open: no upgrade either time
                with pytest.raises(ProviderError, match=r"invoice \d+ \(8\.00, due") as caught:
                    await hostwinds.resize(instance.id, "12")
                assert caught.value.retryable
            assert api.calls_of("upgrade_server") == []
            assert len(api.calls_of("upgrade_instance")) == 1
            assert (await hostwinds.get(instance.id)).status == "running"
            api.pay_invoice(instance.id)
            api.apply_upgrade(instance.id)
            await wait_for(hostwinds, instance.id, "resize_pending_confirm")
            assert (await hostwinds.confirm_resize(instance.id)).plan == "12"


async def test_typed_in_regions_only_when_get_locations_is_refused(
    api: HostwindsDouble, provider: HostwindsProvider
) -> None:
    api.fail_next(1, "error_body", actions={"get_locations"}, message="Invalid Action.")
    assert await provider.regions() == REGIONS
    assert await provider.regions() == LOCATIONS


async def test_requests_leave_over_ipv4() -> None:
    """API keys are allow-listed by IPv4 address: the driver's own transport binds an IPv4
    source, so an IPv6-only endpoint is unreachable to it (and reachable without it)."""
    with hostwinds_double(api_key=API_KEY, host="::1") as api:
        assert api.url.startswith("http://[::1]:")
        async with driver(api.url, max_attempts=1) as hostwinds:
            with pytest.raises(ProviderError, match="unreachable"):
                await hostwinds.plans()
        async with driver(api.url, transport=httpx.AsyncHTTPTransport()) as any_family:
            assert await any_family.plans()
    assert [call.outcome for call in api.calls] == ["ok"]


async def test_bad_api_key(api: HostwindsDouble) -> None:
    async with driver(api.url, key="not-the-key") as hostwinds:
        with pytest.raises(ProviderError, match="Not Authorized!") as caught:
            await hostwinds.plans()
        assert not caught.value.retryable
        assert hostwinds.breaker.state == "closed"
    assert [call.outcome for call in api.calls] == ["unauthorized"]


async def test_unknown_instance(api: HostwindsDouble, provider: HostwindsProvider) -> None:
    with pytest.raises(ProviderNotFound, match="A valid serviceid is required") as caught:
        await provider.get("999999")
    assert not caught.value.retryable
    with pytest.raises(ProviderNotFound):
        await provider.list_ips("not-a-number")
    assert len(api.calls) == 1  # the malformed id never reached Hostwinds, nothing retried


async def test_error_bodies_surface_hostwinds_message(
    api: HostwindsDouble, provider: HostwindsProvider, keys: IssuedAdminKey
) -> None:
    with pytest.raises(ProviderError, match="Location Id is invalid") as caught:
        await provider.create("mx1", "99", "11", USER_DATA, SSH_KEY, keys)
    assert not caught.value.retryable
    assert api.instances == {}

    api.fail_next(1, "error_body", actions={"get_price_list"}, message="Billing is offline.")
    with pytest.raises(ProviderError, match=r"Billing is offline\."):
        await provider.plans()
    assert len(api.calls_of("get_price_list")) == 1  # an error body is an answer: no retry


async def test_second_upgrade_is_refused(
    api: HostwindsDouble, provider: HostwindsProvider, keys: IssuedAdminKey
) -> None:
    instance = await running_instance(provider, keys)
    await provider.resize(instance.id, "12")
    with pytest.raises(ProviderError, match="an upgrade order is already open"):
        await provider.resize(instance.id, "13")
    assert len(api.calls_of("upgrade_instance")) == 1
    await wait_for(provider, instance.id, "resize_pending_confirm")
    assert (await provider.confirm_resize(instance.id)).plan == "12"


async def test_client_rate_limit_spaces_requests() -> None:
    with hostwinds_double(api_key=API_KEY, rate_limit=2) as api:
        async with driver(api.url, requests_per_second=2.0) as hostwinds:
            await asyncio.gather(*(hostwinds.plans() for _ in range(5)))
    arrivals = [call.at for call in api.calls]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) == 5
    # Sent 0.5 s apart; each arrival may be late by the machine's scheduling jitter (tens of
    # ms under load), which shortens one gap and lengthens the next: none is a burst, and
    # the five span the four intervals.
    assert min(gaps) >= 0.3, gaps
    assert arrivals[-1] - arrivals[0] >= 1.9, gaps
    assert all(call.outcome == "ok" for call in api.calls)


@pytest.mark.parametrize("style", ["body", "http"])
async def test_rate_limit_answers_are_retried(style: str) -> None:
    with hostwinds_double(api_key=API_KEY, rate_limit=2, rate_limit_style=style) as api:
        async with driver(api.url, backoff_base=0.2, backoff_cap=1.0) as hostwinds:
            for _ in range(4):
                assert await hostwinds.plans()
            assert hostwinds.breaker.state == "closed"
    outcomes = [call.outcome for call in api.calls]
    assert "rate_limited" in outcomes
    assert outcomes.count("ok") == 4


async def test_rate_limit_retries_run_out() -> None:
    with hostwinds_double(api_key=API_KEY) as api:
        api.fail_next(4, "rate_limited")
        async with driver(api.url) as hostwinds:
            with pytest.raises(ProviderRateLimited, match="Rate limit exceeded") as caught:
                await hostwinds.plans()
    assert caught.value.retryable
    assert len(api.calls) == 4


async def test_retries_500_then_succeeds(api: HostwindsDouble, provider: HostwindsProvider) -> None:
    api.fail_next(2, "http_500")
    assert await provider.plans()
    assert [call.outcome for call in api.calls] == ["injected:http_500"] * 2 + ["ok"]


async def test_retries_are_bounded(api: HostwindsDouble, provider: HostwindsProvider) -> None:
    api.fail_next(10, "http_500")
    with pytest.raises(ProviderError, match="HTTP 500") as caught:
        await provider.plans()
    assert caught.value.retryable
    assert len(api.calls) == FAST.max_attempts


async def test_read_timeouts_are_retried(api: HostwindsDouble, provider: HostwindsProvider) -> None:
    api.fail_next(1, "hang", hang=0.6)
    assert await provider.plans()
    assert len(api.calls) == 2


async def test_circuit_opens_then_closes_after_cooldown(api: HostwindsDouble) -> None:
    async with driver(api.url, max_attempts=1, failure_threshold=3, cooldown=0.3) as hostwinds:
        api.fail_next(3, "http_500")
        for _ in range(3):
            with pytest.raises(ProviderError, match="HTTP 500"):
                await hostwinds.plans()
        assert hostwinds.breaker.state == "open"
        with pytest.raises(ProviderUnavailable, match="circuit is open") as caught:
            await hostwinds.plans()
        assert caught.value.retryable
        assert len(api.calls) == 3  # failing fast: nothing sent

        await asyncio.sleep(0.35)
        api.fail_next(1, "http_500")  # the half-open probe fails: open again at once
        with pytest.raises(ProviderError, match="HTTP 500"):
            await hostwinds.plans()
        with pytest.raises(ProviderUnavailable):
            await hostwinds.plans()

        await asyncio.sleep(0.35)
        assert await hostwinds.plans()
        assert hostwinds.breaker.state == "closed"
        assert await hostwinds.plans()
    assert len(api.calls) == 6


async def test_create_that_timed_out_is_not_duplicated(
    api: HostwindsDouble, provider: HostwindsProvider, keys: IssuedAdminKey
) -> None:
    api.fail_next(1, "hang_after_action", actions={"add_instance"}, hang=0.6)
    created = await provider.create("mx1", "1", "11", USER_DATA, SSH_KEY, keys)
    assert created.name == "mx1"
    assert len(api.calls_of("add_instance")) == 1
    assert len(api.instances) == 1


async def test_create_resent_when_the_order_never_arrived(
    api: HostwindsDouble, provider: HostwindsProvider, keys: IssuedAdminKey
) -> None:
    api.fail_next(1, "hang", actions={"add_instance"}, hang=0.6)
    created = await provider.create("mx1", "1", "11", USER_DATA, SSH_KEY, keys)
    assert len(api.calls_of("add_instance")) == 2
    assert list(api.instances) == [int(created.id)]


async def test_add_ip_that_timed_out_is_not_duplicated(
    api: HostwindsDouble, provider: HostwindsProvider, keys: IssuedAdminKey
) -> None:
    instance = await running_instance(provider, keys)
    api.fail_next(1, "hang_after_action", actions={"add_ip"}, hang=0.6)
    extra = await provider.add_ip(instance.id)
    assert len(api.calls_of("add_ip")) == 1
    assert api.instances[int(instance.id)].ips == [instance.ipv4[0], extra]


async def test_api_key_never_leaks(
    api: HostwindsDouble, keys: IssuedAdminKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with driver(api.url, max_attempts=2, failure_threshold=4) as hostwinds:
        assert API_KEY not in repr(hostwinds) and API_KEY not in repr(vars(hostwinds))
        instance = await running_instance(hostwinds, keys)
        api.fail_next(1, "error_body", message=f"Key {API_KEY} is not allowed here.")
        api.fail_next(1, "hang", hang=0.6)
        api.fail_next(4, "http_500")
        for _ in range(4):
            try:
                await hostwinds.get(instance.id)
            except ProviderError as exc:
                errors.append(exc)
    async with driver(f"http://127.0.0.1:{free_port()}/cloud/api.php", max_attempts=2) as down:
        with pytest.raises(ProviderError, match="unreachable") as caught:
            await down.plans()
        errors.append(caught.value)

    assert len(errors) == 5 and isinstance(errors[3], ProviderUnavailable)
    assert "***" in str(errors[0])
    for error in errors:
        text = "".join(traceback.format_exception(error))
        assert API_KEY not in text and API_KEY not in repr(error)
    assert "retry" in caplog.text and "circuit open" in caplog.text
    assert API_KEY not in caplog.text


def test_status_and_instance_mapping() -> None:
    assert map_status("ACTIVE") == "running"
    assert map_status("active") == "running"
    assert map_status("RESIZED") == "resize_pending_confirm"
    assert map_status("", "building") == "creating"
    assert map_status("ACTIVE", suspended=1) == "stopped"
    assert map_status("SOMETHING_NEW") == "creating"  # not ready yet, until the deadline
    assert map_status("ERROR") == "error"
    instance = parse_instance(
        {
            "serviceid": 7,
            "srvrname": "mx7",
            "location_id": 2,
            "product_id": 11,
            "status": "ACTIVE",
            "main_ip": "192.0.2.7",
            "private_ip": "10.0.0.7",
            "ips": [{"ip": "192.0.2.8"}, "10.0.0.7"],
            "ip_v6": "2001:db8::7",
            "password": "root-password",
        }
    )
    assert instance == Instance(
        "7", "mx7", "running", "2", "11", ("192.0.2.7", "192.0.2.8"), ("2001:db8::7",)
    )
    assert "root-password" not in repr(instance)


def test_answers_read_where_only_the_request_is_documented() -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n-----END OPENSSH PRIVATE KEY-----"
    for answer in (
        {"result": "success", "private_key": key},
        [{"result": "success", "message": f"Key created: {key}"}],
        {"success": {"key": key.replace("\n", "\\n")}},
    ):
        assert find_private_key(answer) == key + "\n"
    assert find_private_key([{"result": "success", "message": "SSH key created."}]) is None
    seattle = Region("1", "Seattle")
    assert parse_locations({"success": [{"id": 1, "name": "Seattle"}]}) == (seattle,)
    assert parse_locations({"1": "Seattle", "x": "Nowhere"}) == (seattle,)
    assert parse_locations([{"location_id": "1", "location": "Seattle"}]) == (seattle,)
