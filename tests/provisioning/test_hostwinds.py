"""The Hostwinds driver against the contract double, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import itertools
import logging
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from decimal import Decimal

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
from control_plane.provisioning.providers.hostwinds_responses import map_status, parse_instance
from tests.fakes.hostwinds import HostwindsDouble, hostwinds_double
from tests.support.ports import free_port

API_KEY = "hwk-7f3a9c1e5b2d4f6a8c0e2b4d6f8a1c3e"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests mailfleet@test"
USER_DATA = "#cloud-config\nwrite_files: []\n"
REGIONS = (Region("1", "Seattle, WA"), Region("2", "Dallas, TX"))
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


def driver(url: str, key: str = API_KEY, **settings: object) -> HostwindsProvider:
    options = replace(FAST, base_url=url, **settings)
    return HostwindsProvider(key, template="debian-12", regions=REGIONS, settings=options)


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


async def running_instance(provider: Provider, name: str = "mx1") -> Instance:
    created = await provider.create(name, "1", "11", USER_DATA, SSH_KEY)
    return await wait_for(provider, created.id, "running")


async def test_lifecycle(api: HostwindsDouble, provider: HostwindsProvider) -> None:
    assert await provider.regions() == REGIONS
    plans = {plan.id: plan for plan in await provider.plans()}
    assert plans["11"].monthly_price == Decimal("9.99")  # unmanaged (managed=0) price
    assert (plans["12"].vcpus, plans["12"].memory_mb, plans["12"].disk_gb) == (2, 4096, 75)
    assert plans["12"].currency == "USD"
    assert plans["12"].included_gb == 2000

    created = await provider.create("mx1", "1", "11", USER_DATA, SSH_KEY)
    assert (created.name, created.status, created.region, created.plan) == (
        "mx1",
        "creating",
        "1",
        "11",
    )
    stored = api.instances[int(created.id)]
    assert stored.user_data == USER_DATA
    assert api.ssh_keys[stored.keys[0]] == SSH_KEY

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
    await provider.terminate(created.id)  # already gone: done


async def test_revert_resize_and_remove_ip(
    api: HostwindsDouble, provider: HostwindsProvider
) -> None:
    instance = await running_instance(provider)
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
    api: HostwindsDouble, provider: HostwindsProvider
) -> None:
    first = await provider.create("mx1", "1", "11", USER_DATA, SSH_KEY)
    again = await provider.create("mx1", "1", "11", USER_DATA, SSH_KEY)
    assert again.id == first.id
    assert len(api.calls_of("add_instance")) == 1
    other = await provider.create("mx2", "2", "11", USER_DATA, SSH_KEY)
    assert other.id != first.id and other.region == "2"
    assert len(api.calls_of("add_ssh_key")) == 2  # second one: "already exists", reused


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
    api: HostwindsDouble, provider: HostwindsProvider
) -> None:
    with pytest.raises(ProviderError, match="Location Id is invalid") as caught:
        await provider.create("mx1", "99", "11", USER_DATA, SSH_KEY)
    assert not caught.value.retryable
    assert api.instances == {}

    api.fail_next(1, "error_body", actions={"get_price_list"}, message="Billing is offline.")
    with pytest.raises(ProviderError, match=r"Billing is offline\."):
        await provider.plans()
    assert len(api.calls_of("get_price_list")) == 1  # an error body is an answer: no retry


async def test_second_upgrade_is_refused(api: HostwindsDouble, provider: HostwindsProvider) -> None:
    instance = await running_instance(provider)
    await provider.resize(instance.id, "12")
    with pytest.raises(ProviderError, match="Only one upgrade order is allowed") as caught:
        await provider.resize(instance.id, "13")
    assert not caught.value.retryable
    await wait_for(provider, instance.id, "resize_pending_confirm")
    assert (await provider.confirm_resize(instance.id)).plan == "12"


async def test_client_rate_limit_spaces_requests() -> None:
    with hostwinds_double(api_key=API_KEY, rate_limit=2) as api:
        async with driver(api.url, requests_per_second=2.0) as hostwinds:
            await asyncio.gather(*(hostwinds.plans() for _ in range(5)))
    arrivals = [call.at for call in api.calls]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(arrivals) == 5
    assert min(gaps) >= 0.45, gaps
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
    api: HostwindsDouble, provider: HostwindsProvider
) -> None:
    api.fail_next(1, "hang_after_action", actions={"add_instance"}, hang=0.6)
    created = await provider.create("mx1", "1", "11", USER_DATA, SSH_KEY)
    assert created.name == "mx1"
    assert len(api.calls_of("add_instance")) == 1
    assert len(api.instances) == 1


async def test_create_resent_when_the_order_never_arrived(
    api: HostwindsDouble, provider: HostwindsProvider
) -> None:
    api.fail_next(1, "hang", actions={"add_instance"}, hang=0.6)
    created = await provider.create("mx1", "1", "11", USER_DATA, SSH_KEY)
    assert len(api.calls_of("add_instance")) == 2
    assert list(api.instances) == [int(created.id)]


async def test_add_ip_that_timed_out_is_not_duplicated(
    api: HostwindsDouble, provider: HostwindsProvider
) -> None:
    instance = await running_instance(provider)
    api.fail_next(1, "hang_after_action", actions={"add_ip"}, hang=0.6)
    extra = await provider.add_ip(instance.id)
    assert len(api.calls_of("add_ip")) == 1
    assert api.instances[int(instance.id)].ips == [instance.ipv4[0], extra]


async def test_api_key_never_leaks(api: HostwindsDouble, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with driver(api.url, max_attempts=2, failure_threshold=4) as hostwinds:
        assert API_KEY not in repr(hostwinds) and API_KEY not in repr(vars(hostwinds))
        instance = await running_instance(hostwinds)
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
    assert map_status("SOMETHING_NEW") == "error"
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
