"""DNSBL monitoring in a real ``mailfleet serve``: an address registered through the API is
looked up by the serve's own sweep on lists Knot serves, without anyone asking; listed on
a major list, it is paused and an incident is open; another list clean; the score shows it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.conftest import PlaneFactory
from tests.e2e.test_health_alerts import call, tenant_client
from tests.support.dnsbl import Listing, Zone, addresses, catalog, knot_zones
from tests.support.knot import run_knot_primary

pytestmark = pytest.mark.e2e


def test_serve_looks_addresses_up_and_pauses_a_major_listing(plane_factory: PlaneFactory) -> None:
    listed, clean = addresses(2)
    zones = [
        Zone("bl-e2e-major.test", listed={listed: Listing("127.0.0.3", "e2e listing")}),
        Zone("bl-e2e-minor.test"),
    ]
    lists = catalog(
        {"zone": "bl-e2e-major.test", "name": "E2E major", "major": True, "weight": 30},
        {"zone": "bl-e2e-minor.test", "name": "E2E minor", "weight": 10},
    )
    with run_knot_primary(knot_zones(zones)) as knot:
        plane = plane_factory(
            MAILFLEET_DNSBL_LISTS=json.dumps(lists),
            MAILFLEET_DNSBL_RESOLVERS=f"{knot.host}:{knot.port}",
            MAILFLEET_DNSBL_TIMEOUT_SECONDS="1",
            MAILFLEET_DNSBL_TICK_SECONDS="0.2",
        )
        _, http = tenant_client(plane, "dnsbl")
        with http:
            body = {"name": "bl-e2e", "provider": "manual", "mail_stack": "none"}
            server = call(http, "POST", "/api/v1/servers", 201, json=body)
            for address in (listed, clean):
                call(http, "POST", f"/api/v1/servers/{server['id']}/ips", 201,
                     json={"address": address})  # fmt: skip
            seen: dict[str, Any] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                seen = {
                    a: call(http, "GET", f"/api/v1/ips/{a}/reputation") for a in (listed, clean)
                }
                if all(r["listing"] is not None for r in seen.values()):
                    break
                time.sleep(0.2)
            assert (seen[listed]["listing"], seen[listed]["score"]) == ("listed", 25)
            assert (seen[clean]["listing"], seen[clean]["score"]) == ("clean", 100)
            major = next(r for r in seen[listed]["results"] if r["list"] == "bl-e2e-major.test")
            assert (major["code"], major["reason"]) == ("127.0.0.3", "e2e listing")
            ip = call(http, "GET", f"/api/v1/ips/{listed}")
            assert ip["pause"]["paused"] and ip["pause"]["reason"] == "listed on E2E major"
            assert not call(http, "GET", f"/api/v1/ips/{clean}")["pause"]["paused"]
            incidents = call(http, "GET", "/api/v1/incidents")["items"]
            opened = {(i["subject_id"], i["check"], i["severity"]) for i in incidents}
            assert (listed, "dnsbl.bl-e2e-major.test", "critical") in opened
