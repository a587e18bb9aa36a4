"""The agent package (issue 19, part 4): a bare local VPS booted through ``cloud-init`` user
data fetches ``install.sh`` and the wheels from a real ``mailfleet serve`` over its namespace
link, installs ``mailfleet-agent`` into a virtualenv under its own root (``--root``), starts
it and enrolls; the script checks every SHA-256 and is safe to run again."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from control_plane.provisioning.agent_package import repack
from control_plane.provisioning.providers.local import NETNS_DIR
from tests.e2e.conftest import PlaneFactory
from tests.e2e.conftest import local_net as local_net  # the fixtures, used here too
from tests.e2e.conftest import plane_factory as plane_factory
from tests.e2e.local import LocalNet, order, wait_gone, wait_state
from tests.provisioning.machines import RESTIC
from tests.provisioning.machines import agent_wheelhouse as agent_wheelhouse  # the fixture

pytestmark = pytest.mark.postgres_only


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_bare_local_vps_installs_the_served_agent_package_and_enrolls(
    local_net: LocalNet, plane_factory: PlaneFactory, tmp_path: Path, agent_wheelhouse: Path
) -> None:
    plane = plane_factory(
        **local_net.settings(),
        MAILFLEET_LOCAL_PROVIDER_AGENT="package",
        MAILFLEET_AGENT_WHEELHOUSE_DIR=str(agent_wheelhouse),  # shared with the SSH test
        MAILFLEET_AGENT_RESTIC_BINARY=RESTIC,  # served; fetched only where restic is too old
    )
    # What the VPS will fetch: the script lists each file with its SHA-256, served as listed.
    script = plane.http.get("/agent/install.sh")
    assert script.status_code == 200, script.text
    assert script.headers["x-checksum-sha256"] == _sha256(script.content)
    listed = {  # the "sha256  name" lines
        line[66:]: line[:64] for line in script.text.splitlines()
        if re.fullmatch(r"[0-9a-f]{64}  [A-Za-z0-9._+-]+", line)
    }  # fmt: skip
    (agent_wheel,) = [n for n in listed if n.startswith("mailfleet_agent-")]
    assert any(n.startswith("grpcio-") for n in listed)
    assert not any(n.split("-")[0] in ("fastapi", "sqlalchemy", "mailfleet") for n in listed)
    for name in (agent_wheel, "restic"):
        served = plane.http.get(f"/agent/wheels/{name}")
        assert served.status_code == 200 and _sha256(served.content) == listed[name]
    assert listed["restic"] == _sha256(Path(RESTIC).read_bytes())
    for name in ("nope.whl", "SHA256SUMS", "..", "..%2F..%2Fmailfleet.db", "%2Fetc%2Fpasswd"):
        missing = plane.http.get(f"/agent/wheels/{name}")
        assert missing.status_code == 404, name  # only names on the list are served
    assert plane.http.get("/agent/wheels/nope.whl").json()["errors"][0]["field"] == "path.name"

    # A file that does not match its SHA-256 is refused before anything is installed.
    first = min(listed)  # fetched first
    tampered = script.text.replace(listed[first], "0" * 64)
    root = tmp_path / "tampered-root"
    (root / "etc" / "mailfleet").mkdir(parents=True)
    (root / "etc" / "mailfleet" / "agent.toml").write_text("")
    refused = subprocess.run(
        ["sh", "-s", "--", "--url", plane.url, "--root", str(root)],
        input=tampered, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 1, refused.stderr
    assert f"{first}: SHA-256 {listed[first]}, expected {'0' * 64}" in refused.stderr
    assert not (root / "opt" / "mailfleet-agent").exists()

    tenant = plane.api("POST", "/api/v1/tenants", 201, json={"name": f"t-{time.time_ns()}"})
    server = order(plane, tenant["id"], "pkg1")
    ready = wait_state(plane, server["id"], "ready", timeout=120)
    assert ready["status"] == "online"
    (record,) = local_net.instances()
    instance = local_net.state_dir / record["id"]
    rootfs = instance / "rootfs"
    boot_log = (instance / "boot.log").read_text()
    assert "mailfleet-agent 0.1.0 installed in" in boot_log, boot_log
    # The agent that enrolled runs from the VPS's own virtualenv, which holds no control plane.
    venv = rootfs / "opt" / "mailfleet-agent"
    pid = int((rootfs / "run" / "mailfleet-agent.pid").read_text())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[1] == str(venv / "bin" / "mailfleet-agent").encode(), cmdline
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / "agent").is_dir() and (site / "mailfleet" / "agent" / "v1").is_dir()
    assert not any((site / p).exists() for p in ("control_plane", "fastapi", "sqlalchemy", "pip"))
    assert not (rootfs / "var/cache/mailfleet-agent/restic").exists()  # this host's is >= 0.14

    # Run again (over the same link): nothing fetched or installed twice, the same agent kept.
    again = subprocess.run(
        ["nsenter", f"--net={NETNS_DIR / record['namespace']}", "--", "sh",
         str(rootfs / "usr/local/sbin/mailfleet-install-agent"), f"http://{local_net.subnet[1]}:"
         + plane.url.rsplit(":", 1)[1]],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MAILFLEET_LOCAL_ROOT": str(rootfs)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "mailfleet-agent 0.1.0 already installed" in again.stdout
    assert f"mailfleet-agent already running (pid {pid})" in again.stdout

    plane.api("DELETE", f"/api/v1/servers/{server['id']}", 202)
    wait_gone(plane, server["id"])
    assert local_net.instances() == []  # the local_net fixture checks nothing else is left


def test_a_repacked_distribution_is_a_valid_reproducible_wheel(tmp_path: Path) -> None:
    """The dependencies are repacked from what is installed: every file with its RECORD hash,
    the installer's own files left out, the same bytes each time (the SHA-256s stay put)."""
    dist = importlib.metadata.distribution("idna")
    first = repack(dist, tmp_path)
    copy_dir = tmp_path / "again"
    copy_dir.mkdir()
    again = repack(dist, copy_dir)
    assert first.name == again.name and first.read_bytes() == again.read_bytes()
    assert first.name.startswith(f"idna-{dist.version}-py3-none-any")
    with zipfile.ZipFile(first) as wheel:
        names = wheel.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        record = wheel.read(f"{info}/RECORD").decode().splitlines()
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            if name == f"{info}/RECORD":
                continue
            data = wheel.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + expected.decode() and int(size) == len(data), name
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith(info)} >= {"METADATA", "WHEEL"}
    assert not any(n.endswith((".pyc", "/INSTALLER", "/direct_url.json")) for n in names)
    assert len(record) == len(names)
