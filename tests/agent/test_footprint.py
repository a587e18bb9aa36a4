"""The daemon's process holds what idling needs and no more (issue 19: ≤ 40 MB RSS): the CLI
libraries, the HTTP client, cryptography, OpenSSL's Python bindings and command handlers'
modules load only when a short-lived command, a helper or the first command of their kind
needs them."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

from agent.commands import ON_FIRST_USE, ROOTED, imported

# Loaded by the entry point and the daemon's objects, these would stay resident for good.
NOT_WHILE_IDLE = (
    "typer",
    "click",
    "rich",
    "httpx",
    "httpcore",
    "cryptography",
    "ssl",  # asyncio's; the daemon's TLS is grpc's BoringSSL (agent.footprint)
    "_ssl",
    "_hashlib",  # hashlib's OpenSSL backend (libcrypto)
    "yaml",
    "psutil",  # collect-facts' (agent.facts); the sampler reads /proc (agent.procfs)
    "agent.facts",
    "agent.cli_tools",
    "agent.pki",
    "agent.mailu",
    "agent.backup",
    "agent.maillog",
    "agent.smtp_probe",
)

DAEMON = """
import json, sys
from pathlib import Path
from agent.cli import daemon_class  # how `mailfleet-agent run` loads the daemon

agent = daemon_class()(Path(sys.argv[1]), Path("/"))  # config, journal, spool, network, handlers
assert "mailu.install" in agent.commands.handlers
idle = sorted(sys.modules)
import hashlib, ssl  # a command's module may still use both: the real ones load then
assert hashlib.sha256(b"").hexdigest().startswith("e3b0c442")
assert ssl.create_default_context().verify_mode == ssl.CERT_REQUIRED
print(json.dumps(idle))
"""


def test_daemon_imports_none_of_what_idling_does_not_need(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[control_plane]\naddress = "127.0.0.1:1"\n'
        f'enroll_address = "127.0.0.1:2"\nca_pin = "sha256:{"0" * 64}"\njoin_token = "mfjoin_x"\n'
    )
    out = subprocess.run(
        [sys.executable, "-c", DAEMON, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    modules = set(json.loads(out))
    assert {"agent.daemon", "grpc", "agent.metrics"} <= modules  # the check sees what is loaded
    loaded = sorted(
        name
        for name in modules
        for top in NOT_WHILE_IDLE
        if name == top or name.startswith(top + ".")
    )
    assert loaded == []


def test_every_command_loaded_on_first_use_names_a_coroutine() -> None:
    for target in (*ROOTED.values(), *ON_FIRST_USE.values()):
        assert inspect.iscoroutinefunction(imported(target)), target
