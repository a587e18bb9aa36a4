"""Stand-in images under MailU's exact names and tags, built from Debian's busybox-static.

MailU's registry cannot be reached here, so each image the agent renders is imported with
``docker import`` from one small root filesystem (busybox and three scripts) and given, with
``--change``, the command and the healthcheck of its service. Each listens on its service's
ports, so the engine, Compose, networks, bind addresses, env files, volumes, restarts and
healthchecks are all real:

- ``front`` listens on every port of ``PORTS`` in its env file (as MailU's front serves
  only those), the others on their service's fixed ports;
- ``admin`` forwards its port 8080 to the Mailu REST API double (tests/fakes/mailu_api.py),
  which a test runs in the engine's namespace on ``API_DOUBLE_PORT`` (the container reaches
  it through its network's gateway);
- ``smtp`` has ``postqueue -j``, one JSON line per file in the queue directories;
- the healthcheck passes once every port the container is meant to serve listens.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.mailu.spec import CLAMAV_IMAGE, IMAGE_REGISTRY, MAILU_VERSION, REDIS_IMAGE
from tests.support.docker_engine import DockerEngine

BUSYBOX = "/bin/busybox"
API_DOUBLE_PORT = 18080  # in the engine's namespace, never the host's
APPLETS = (
    "sh", "nc", "netstat", "sleep", "ip", "awk", "grep", "cat", "find", "tr", "basename",
    "echo", "ls", "mkdir", "kill", "wget", "printf", "pidof",
)  # fmt: skip
LABEL = "org.mailfleet.standin"
# A start period, as MailU's own images have: checks failing while a container starts (its
# listeners slow on a loaded machine) do not count; the first that passes makes it healthy.
# Every check is an exec through dockerd and containerd: at 300 ms the session's MailU VPS
# (ten containers) kept a third of a core busy for the whole suite; at 2 s a service is
# healthy 2 s after it starts and unhealthy 6 s after it stops answering.
HEALTHCHECK = (
    "HEALTHCHECK --interval=2s --timeout=2s --start-period=15s --retries=3 CMD /bin/healthy"
)

SERVE = r"""#!/bin/sh
# The stand-in's process: listen on the given ports (front: its env's PORTS), then wait.
trap 'exit 0' TERM INT
ports="$*"
if [ "$ports" = "PORTS" ]; then ports=$(echo "$PORTS" | tr , ' '); fi
mkdir -p /run
echo "$ports" > /run/standin-ports
for port in $ports; do
  if [ "$port" = 8080 ] && [ -n "$API_DOUBLE_PORT" ]; then
    nc -ll -p "$port" -e /bin/forward &
  else
    nc -ll -p "$port" -e /bin/banner &
  fi
done
sleep 2147483647 &
wait
"""
BANNER = '#!/bin/sh\necho "220 $(basename $0) stand-in"\n'
FORWARD = r"""#!/bin/sh
# MailU's admin API: the Mailu REST API double, on the network's gateway.
gateway=$(ip route | awk '/^default/ {print $3; exit}')
exec nc "$gateway" "$API_DOUBLE_PORT"
"""
HEALTHY = r"""#!/bin/sh
listening=$(netstat -ltn)
for port in $(cat /run/standin-ports); do
  echo "$listening" | grep -q ":$port " || exit 1
done
"""
POSTQUEUE = r"""#!/bin/sh
# postqueue -j: one JSON object per queued message (Postfix's queue directories at /queue).
for queue in incoming active deferred hold; do
  [ -d "/queue/$queue" ] || continue
  find "/queue/$queue" -type f | while read -r file; do
    printf '{"queue_name": "%s", "queue_id": "%s"}\n' "$queue" "$(basename "$file")"
  done
done
"""


@dataclass(frozen=True)
class StandIn:
    image: str
    ports: str  # "PORTS" for front: what its env file says
    healthcheck: bool = True  # MailU's own images carry one; redis's and clamav's do not


def stand_ins(version: str = MAILU_VERSION) -> list[StandIn]:
    def mailu(name: str) -> str:
        return f"{IMAGE_REGISTRY}/{name}:{version}"

    return [
        StandIn(mailu("nginx"), "PORTS"),
        StandIn(mailu("unbound"), "53"),
        StandIn(mailu("admin"), "8080"),
        StandIn(mailu("dovecot"), "143 993 110 995 4190 2102"),
        StandIn(mailu("postfix"), "25 10025"),
        StandIn(mailu("rspamd"), "11332 11334"),
        StandIn(mailu("oletools"), "11343"),
        StandIn(mailu("webmail"), "80"),
        StandIn(REDIS_IMAGE, "6379", healthcheck=False),
        StandIn(CLAMAV_IMAGE, "3310", healthcheck=False),
    ]


def root_filesystem() -> bytes:
    """The tar every stand-in is imported from (fixed times: the same bytes every run)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE,
                link: str = "", mode: int = 0o755) -> None:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode, info.mtime = kind, link, mode, 0
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        for directory in ("bin", "usr", "usr/sbin", "tmp", "run", "etc", "proc", "sys", "dev"):
            add(directory, kind=tarfile.DIRTYPE, mode=0o1777 if directory == "tmp" else 0o755)
        with open(BUSYBOX, "rb") as handle:
            add("bin/busybox", handle.read())
        for applet in APPLETS:
            add(f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox")
        add("bin/serve", SERVE.encode())
        add("bin/banner", BANNER.encode())
        add("bin/forward", FORWARD.encode())
        add("bin/healthy", HEALTHY.encode())
        add("usr/sbin/postqueue", POSTQUEUE.encode())
        add("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n", mode=0o644)
    return buffer.getvalue()


def content_hash(version: str = MAILU_VERSION) -> str:
    digest = hashlib.sha256(root_filesystem())
    digest.update(f"{HEALTHCHECK}|{API_DOUBLE_PORT}".encode())  # what import adds to each
    for stand_in in stand_ins(version):
        digest.update(repr(stand_in).encode())
    return digest.hexdigest()[:16]


def import_stand_ins(engine: DockerEngine, version: str = MAILU_VERSION) -> list[str]:
    """Import the stand-ins the engine lacks (labelled with the content hash: an engine
    that has this build already keeps it); the images imported."""
    tag = content_hash(version)
    have = engine.docker(
        "images", "--filter", f"label={LABEL}={tag}", "--format", "{{.Repository}}:{{.Tag}}"
    ).stdout.split()
    rootfs = root_filesystem()
    imported = []
    for stand_in in stand_ins(version):
        if stand_in.image in have:
            continue
        changes = [
            f'CMD ["/bin/serve", "{stand_in.ports}"]',
            f"LABEL {LABEL}={tag}",
            f"ENV API_DOUBLE_PORT={API_DOUBLE_PORT}",
        ]
        if stand_in.healthcheck:
            changes.append(HEALTHCHECK)
        argv = ["import"]
        for change in changes:
            argv += ["--change", change]
        engine.docker(*argv, "-", stand_in.image, input=rootfs)
        imported.append(stand_in.image)
    return imported


@contextmanager
def api_double(namespace: str, mailu: Path) -> Iterator[Path]:
    """The Mailu REST API double in ``namespace``, where the stand-in admin forwards MailU's
    API: its token is ``API_TOKEN`` of ``mailu/mailu.env`` (read per request), its data in
    ``mailu/data`` (the admin's /data, where MailU keeps its database). Yields the data file."""
    state = mailu / "data" / "mailu-api.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[2]
    with (mailu.parent / "mailu-api.log").open("ab") as log:
        process = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{namespace}", sys.executable, "-m",
             "tests.fakes.mailu_api", str(API_DOUBLE_PORT), f"@{mailu / 'mailu.env'}",
             str(state), "0.0.0.0"],  # noqa: S104 - the namespace's addresses only
            cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not _listening(namespace, API_DOUBLE_PORT):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Mailu API double did not start listening")
            time.sleep(0.05)
        yield state
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _listening(namespace: str, port: int) -> bool:
    out = subprocess.run(
        ["nsenter", f"--net=/var/run/netns/{namespace}", "ss", "-Hltn", f"sport = :{port}"],
        capture_output=True, text=True, timeout=10, check=False,
    ).stdout  # fmt: skip
    return bool(out.strip())


def stand_in_archive(version: str = MAILU_VERSION) -> Path:
    """A ``docker save`` archive of the stand-ins (what a local VPS's engine is given, as
    ``MAILFLEET_LOCAL_PROVIDER_DOCKER_IMAGES``), built once per content hash and kept."""
    from tests.support.docker_engine import delete_namespace, make_namespace, start_engine

    tag = content_hash(version)
    archive = Path(tempfile.gettempdir()) / f"mailfleet-standins-{tag}.tar"
    if archive.exists():
        return archive
    namespace = f"mfsave-{os.getpid() % 100000}"
    directory = Path(tempfile.mkdtemp(prefix="mfsave-"))
    make_namespace(namespace)
    try:
        engine = start_engine(namespace, directory)
        try:
            import_stand_ins(engine, version)
            partial = archive.with_suffix(f".{os.getpid()}.partial")
            images = [stand_in.image for stand_in in stand_ins(version)]
            engine.docker("save", "--output", str(partial), *images, timeout=120)
            partial.rename(archive)  # whole or not at all, whichever worker wins
        finally:
            engine.stop()
    finally:
        delete_namespace(namespace)
        shutil.rmtree(directory, ignore_errors=True)
    return archive
