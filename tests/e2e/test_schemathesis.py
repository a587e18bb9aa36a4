"""schemathesis against the served OpenAPI document, on both databases: no 5xx, ever."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.conftest import bearer, fresh_database_url
from tests.support.openbao import DevOpenBao
from tests.support.ports import free_port
from tests.support.postgres import drop_database
from tests.support.processes import BIN, mailfleet_env, serve


@pytest_asyncio.fixture
async def own_database_url(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own: the fuzzer revokes keys and deletes objects at random, which
    must not reach the session's shared database (its admin key, other tests' servers)."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    url = await fresh_database_url(backend, tmp_path)
    yield url
    if backend == "postgresql":
        await drop_database(url)


# Two halves of the API, each with a server and database of its own, so the two workers
# share the run (the coverage phase alone sends thousands of requests). Together they
# select every operation, by its name ("METHOD /path"; one regex each, since a second
# include filter would be ANDed with the first): the second half is every name the first
# does not match. Prices sit with the servers so the halves take about as long (measured:
# 89 s and 111 s of schemathesis before, prices 11 s of the second).
FIRST_HALF = "/api/v1/(servers|ips|incidents|silences|prices)"
# The fuzzer reuses ids from earlier answers, so in the half that lists and creates keys it
# revoked its own key (the one GET /api/v1/api-keys shows) and every operation after that
# (six DELETEs, ordered last) only ever got 401. Revoking is fuzzed in the first half, whose
# answers carry no key ids, so there it never meets a live key.
REVOKE_KEY = r"DELETE /api/v1/api-keys/\{api_key_id\}$"
HALVES = {
    "servers-addresses-prices": f"^([A-Z]+ {FIRST_HALF}|{REVOKE_KEY})",
    "everything-else": f"^(?!{REVOKE_KEY})[A-Z]+ (?!{FIRST_HALF})",
}
# The coverage phase also sends each path the methods it does not define (405 from the
# router, before any of MailFleet's code but the middleware): by default eight, which were
# an eighth of its requests. A state-changing one, the CORS preflight's and one no route has
# take every path the middleware has.
CONFIG = """
[phases.coverage]
unexpected-methods = ["delete", "options", "trace"]
"""


@pytest.mark.e2e
@pytest.mark.parametrize("half", HALVES)
def test_fuzzing_the_api_finds_no_server_errors(
    own_database_url: str, openbao: DevOpenBao, tmp_path: Path, half: str
) -> None:
    database_url = own_database_url
    token_file = tmp_path / "vault-token"
    token_file.write_text(openbao.token)
    token_file.chmod(0o600)
    port = free_port()
    env = {
        "MAILFLEET_HOME": str(tmp_path / "var"),
        "MAILFLEET_DATABASE_URL": database_url,
        "MAILFLEET_API_ADDR": f"127.0.0.1:{port}",
        "MAILFLEET_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "MAILFLEET_ENROLL_ADDR": f"127.0.0.1:{free_port()}",
        "MAILFLEET_VAULT_ADDR": openbao.url,
        "MAILFLEET_VAULT_TOKEN_FILE": str(token_file),
        "MAILFLEET_LOG_LEVEL": "warning",
        # Adopting logs in over SSH at the order's address; a made-up one is not ours to reach.
        "MAILFLEET_SSH_ADOPTION": "false",
    }
    with serve(env, "--bootstrap-admin-key") as server:
        server.wait_for_line("MailFleet API:", 60)
        key = server.wait_for_line("Admin API key", 10).rsplit(" ", 1)[1]
        # The first request builds the OpenAPI document (over 10 s on a loaded machine):
        # schemathesis's request timeout is for the API's answers, not that.
        httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=120).raise_for_status()
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG)
        result = subprocess.run(
            [
                str(BIN / "schemathesis"),
                "--config-file",
                str(config),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--header",
                f"Authorization: {bearer(key)['Authorization']}",
                "--include-name-regex",
                HALVES[half],
                # No stateful phase: the API declares no links, so it covered none of the
                # 2,000 it inferred, in 5 scenarios of single calls the other phases make.
                "--phases",
                "examples,coverage,fuzzing",
                # Random cases on top of the coverage phase's boundary cases (every value
                # the schema names, valid and not), which are what find most 5xx here.
                "--max-examples",
                "5",
                # The long poll holds a request up to wait_seconds (≤ 60 s) by design; fuzzing
                # it only measures patience. tests/control_plane/test_commands_api.py covers it.
                "--exclude-operation-id-regex",
                "^get_command_",
                "--seed",
                "20261128",
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--no-color",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            env=mailfleet_env({}),
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
            cwd=tmp_path,
        )
        # The key still works: no operation was fuzzed with a revoked key.
        after = httpx.get(f"http://127.0.0.1:{port}/api/v1/tenants", headers=bearer(key))
        server_log = "\n".join(server.output())
    assert result.returncode == 0, result.stdout[-6000:] + server_log[-3000:]
    assert after.status_code == 200, after.text
    assert "returned only 401" not in result.stdout, result.stdout[-6000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert counts is not None, result.stdout[-2000:]
    assert int(counts.group(1)) == int(counts.group(2)) > 200
    assert "Traceback" not in server_log
