"""The agent package a VPS installs from its control plane: a wheelhouse and its script.

A VPS never installs MailFleet from a package index: it fetches ``GET /agent/install.sh``,
which names every wheel it needs with its SHA-256, and installs them with
``pip --no-index`` into a virtualenv (``install-agent.sh``). The wheelhouse holds:

- ``mailfleet-agent``, built (setuptools, ``packaging/agent/pyproject.toml``) from the very
  ``agent`` and ``mailfleet`` packages this control plane imports, so a VPS runs the agent
  of the control plane's own version and code;
- its dependencies, repacked from the distributions installed beside the control plane
  (their ``RECORD``), so building needs no network and pins the versions tested here. Their
  compiled parts match this machine's Python and platform: a VPS with another Python
  (Ubuntu 22.04's 3.10, 24.04's 3.12) needs ``MAILFLEET_AGENT_WHEELHOUSE_EXTRA``, a
  directory of wheels made for it (``pip download --python-version …``), added as is.

It is built once per input (the agent's sources and the dependency versions; a digest names
its directory under ``MAILFLEET_AGENT_WHEELHOUSE_DIR``), in a temporary directory renamed
into place, so concurrent builders never see half a wheelhouse. Wheels are written with
fixed timestamps: the same inputs give the same SHA-256s.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from control_plane import __version__
from control_plane.settings import Settings

AGENT_DISTRIBUTION = "mailfleet-agent"
MANIFEST = "SHA256SUMS"
SCRIPT = "install.sh"
# The install script's placeholder for "sha256  file" lines (see install-agent.sh).
MANIFEST_MARK = "# @MANIFEST@"
# Files a repacked wheel leaves out: the installer writes them, or they are caches.
_INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# deflate's fastest level: measured here, 1.0 s of CPU for 22.6 MB against 2.5 s for 20.3 MB
# at its default
_DEFLATE = (zipfile.ZIP_DEFLATED, 1)
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
log = logging.getLogger(__name__)
STALE_SECONDS = 86400  # another input's wheelhouse is kept this long after it was built
BUILD_SECONDS = 300  # the agent wheel's build; setuptools alone takes about a second


class PackageError(Exception):
    """The wheelhouse cannot be built (the reason names what is missing)."""


@dataclass(frozen=True)
class Wheelhouse:
    """A built wheelhouse: its directory and each file's SHA-256."""

    directory: Path
    files: dict[str, str]  # name → SHA-256 (hex)
    version: str
    script: str  # install.sh with the manifest in it

    @property
    def script_sha256(self) -> str:
        return hashlib.sha256(self.script.encode()).hexdigest()

    def path_of(self, name: str) -> Path | None:
        """A served file's path, or None when ``name`` is not one (no path is ever built
        from the request: only names in the manifest are looked up)."""
        return self.directory / name if name in self.files else None


def _shipped(name: str) -> str:
    """A file shipped in this package (``packaging/`` links to them), so a control plane
    installed from a wheel (the compose image) builds the agent package too."""
    return resources.files("control_plane.provisioning").joinpath(name).read_text()


def agent_pyproject() -> str:
    """``packaging/agent/pyproject.toml``, the ``mailfleet-agent`` distribution."""
    return _shipped("agent-pyproject.toml")


def install_script_template() -> str:
    return _shipped("install-agent.sh")


def _package_dir(name: str) -> Path:
    """Where an importable package lives, found without importing it (the control plane
    never imports the agent)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise PackageError(f"the {name!r} package is not installed beside the control plane")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _sources(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


def dependency_closure(requirements: list[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``requirements`` need, transitively (markers evaluated
    for this interpreter; extras followed where named)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = [(Requirement(r), "") for r in requirements]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        key = canonicalize_name(requirement.name)
        if key in found:
            continue
        try:
            dist = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            raise PackageError(
                f"{requirement.name} is not installed beside the control plane"
            ) from None
        if not requirement.specifier.contains(dist.version, prereleases=True):
            raise PackageError(f"installed {requirement.name} {dist.version} is not {requirement}")
        found[key] = dist
        for wanted in [*requirement.extras, ""]:
            pending += [(Requirement(r), wanted) for r in dist.requires or []]
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def _digest(pyproject: str, dists: list[importlib.metadata.Distribution]) -> str:
    """What the wheelhouse depends on: the agent's sources, its pyproject, the script and
    every dependency's name and version."""
    h = hashlib.sha256(pyproject.encode())
    h.update(install_script_template().encode())
    for directory in (_package_dir("agent"), _package_dir("mailfleet")):
        for path in _sources(directory):
            h.update(str(path.relative_to(directory.parent)).encode() + b"\0")
            h.update(path.read_bytes())
    for dist in dists:
        h.update(f"{dist.metadata['Name']}=={dist.version}\0".encode())
    return h.hexdigest()[:16]


def build_agent_wheel(pyproject: str, out: Path) -> Path:
    """Build ``mailfleet-agent`` from the installed packages, in a copy laid out like the
    checkout (setuptools writes ``build/`` and ``*.egg-info`` beside the pyproject)."""
    with tempfile.TemporaryDirectory(prefix="mailfleet-agent-build-") as scratch:
        tree = Path(scratch)
        (tree / "packaging" / "agent").mkdir(parents=True)
        (tree / "packaging" / "agent" / "pyproject.toml").write_text(pyproject)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(_package_dir("agent"), tree / "agent", ignore=ignore)
        shutil.copytree(_package_dir("mailfleet"), tree / "protos" / "mailfleet", ignore=ignore)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        command += ["--no-index", "--disable-pip-version-check", "-q", "-w", str(out)]
        done = subprocess.run(
            [*command, str(tree / "packaging" / "agent")],
            capture_output=True,
            text=True,
            timeout=BUILD_SECONDS,
            # no pip configuration of this machine; fixed timestamps: the same SHA-256 each time
            env={**os.environ, "PIP_CONFIG_FILE": os.devnull, "SOURCE_DATE_EPOCH": "315532800"},
            check=False,
        )
        if done.returncode != 0:
            raise PackageError(f"building {AGENT_DISTRIBUTION} failed: {done.stderr[-2000:]}")
        (wheel,) = out.glob("mailfleet_agent-*.whl")
        _check_complete(wheel, tree)
    return wheel


def _check_complete(wheel: Path, tree: Path) -> None:
    """Every module of the copied packages made it into the wheel (the pyproject lists
    packages by name: a new subpackage must be added there)."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {str(p.relative_to(tree)) for p in _sources(tree / "agent") if p.suffix == ".py"}
    expected |= {
        str(p.relative_to(tree / "protos"))
        for p in _sources(tree / "protos" / "mailfleet")
        if p.suffix == ".py"
    }
    missing = sorted(expected - names)
    if missing:
        raise PackageError(f"packaging/agent/pyproject.toml leaves out {', '.join(missing)}")


def _wheel_tag(dist: importlib.metadata.Distribution) -> str:
    """The compressed tag set of an installed wheel, from its ``WHEEL`` file."""
    text = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]
    if not tags:
        raise PackageError(f"{dist.metadata['Name']} was not installed from a wheel")
    parts = [t.split("-") for t in tags]
    return "-".join(".".join(dict.fromkeys(p[i] for p in parts)) for i in range(3))


def repack(dist: importlib.metadata.Distribution, out: Path) -> Path:
    """An installed distribution back into a wheel: the files its ``RECORD`` lists inside
    site-packages (console scripts come back from ``entry_points.txt``)."""
    name = dist.metadata["Name"]
    if dist.read_text("direct_url.json") and '"editable": true' in (
        dist.read_text("direct_url.json") or ""
    ):
        raise PackageError(f"{name} is installed in editable mode; it cannot be repacked")
    stem = f"{canonicalize_name(name).replace('-', '_')}-{dist.version}"
    target = out / f"{stem}-{_wheel_tag(dist)}.whl"
    records: list[str] = []
    info_dir: str | None = None
    with zipfile.ZipFile(target, "w") as archive:
        for file in sorted(dist.files or [], key=str):
            relative = str(file)
            parts = file.parts
            if parts[0] == ".." or "__pycache__" in parts or relative.endswith(".pyc"):
                continue
            if parts[0].endswith(".dist-info"):
                info_dir = parts[0]
                if parts[-1] in _INSTALLER_FILES:
                    continue
            data = Path(str(file.locate())).read_bytes()
            info = zipfile.ZipInfo(relative, _ZIP_TIME)
            info.external_attr = (0o755 if os.access(file.locate(), os.X_OK) else 0o644) << 16
            archive.writestr(info, data, *_DEFLATE)
            records.append(f"{relative},sha256={_b64sha(data)},{len(data)}")
        if info_dir is None:
            raise PackageError(f"{name}: no .dist-info in its RECORD")
        records.append(f"{info_dir}/RECORD,,")
        record = zipfile.ZipInfo(f"{info_dir}/RECORD", _ZIP_TIME)
        record.external_attr = 0o644 << 16
        archive.writestr(record, "\n".join(records) + "\n", *_DEFLATE)
    return target


def _b64sha(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def render_script(files: dict[str, str], version: str) -> str:
    """install.sh with the version and the ``sha256  file`` lines in it."""
    template = install_script_template()
    if MANIFEST_MARK not in template:
        raise PackageError(f"install-agent.sh has no {MANIFEST_MARK!r} line")
    lines = "".join(f"{sha}  {name}\n" for name, sha in sorted(files.items()))
    return template.replace(MANIFEST_MARK, lines.rstrip("\n")).replace(
        'AGENT_VERSION=""', f'AGENT_VERSION="{version}"', 1
    )


def _load(directory: Path) -> Wheelhouse:
    files: dict[str, str] = {}
    for line in (directory / MANIFEST).read_text().splitlines():
        sha, _, name = line.partition("  ")
        files[name] = sha
    version = (directory / "VERSION").read_text().strip()
    return Wheelhouse(directory, files, version, (directory / SCRIPT).read_text())


def build(cache: Path, extra: Path | None = None, restic: Path | None = None) -> Wheelhouse:
    """The wheelhouse for this control plane, built into ``cache`` unless already there."""
    pyproject = agent_pyproject()
    project = tomllib.loads(pyproject)["project"]
    # pip itself, run from its wheel: the VPS's virtualenv is made without pip (no
    # ensurepip, a few seconds faster) and keeps none
    dists = [
        *dependency_closure(list(project["dependencies"])),
        importlib.metadata.distribution("pip"),
    ]
    key = _digest(pyproject, dists)
    if extra is not None:
        key += "-" + hashlib.sha256(str(sorted(extra.glob("*.whl"))).encode()).hexdigest()[:8]
    if restic is not None:
        key += "-" + _sha256(restic)[:8]
    directory = cache / key
    if (directory / MANIFEST).is_file():
        return _load(directory)
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
    try:
        wheel = build_agent_wheel(pyproject, scratch)
        version = wheel.name.split("-")[1]
        if version != __version__:
            raise PackageError(f"built {wheel.name}, but this control plane is {__version__}")
        for dist in dists:
            repack(dist, scratch)
        for found in sorted(extra.glob("*.whl")) if extra is not None else []:
            if _FILE_NAME.match(found.name):
                shutil.copy2(found, scratch / found.name)
        if restic is not None:
            shutil.copy2(restic, scratch / "restic")
        files = {p.name: _sha256(p) for p in sorted(scratch.iterdir())}
        (scratch / MANIFEST).write_text("".join(f"{s}  {n}\n" for n, s in files.items()))
        (scratch / "VERSION").write_text(version + "\n")
        (scratch / SCRIPT).write_text(render_script(files, version))
        scratch.chmod(0o755)
        try:
            scratch.rename(directory)
        except OSError:  # another builder finished first: theirs is the same
            if not (directory / MANIFEST).is_file():
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(scratch)
    _prune(cache, keep=directory)
    return _load(directory)


def _prune(cache: Path, keep: Path) -> None:
    """Wheelhouses of earlier inputs (an upgrade, a changed dependency) once a day old — a
    replica not yet upgraded may still serve one — and builds abandoned an hour ago."""
    now = time.time()
    for other in cache.iterdir():
        age = now - other.stat().st_mtime
        if other != keep and age > (3600 if other.name.startswith(".") else STALE_SECONDS):
            shutil.rmtree(other, ignore_errors=True)


class AgentPackage:
    """The wheelhouse of one control plane, built on first use (in a thread) and kept."""

    def __init__(self, cache: Path, extra: Path | None = None, restic: Path | None = None):
        self.cache = cache
        self.extra = extra
        self.restic = restic
        self._built: Wheelhouse | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> AgentPackage:
        return cls(
            settings.agent_wheelhouse, settings.agent_wheelhouse_extra, settings.agent_restic_binary
        )

    @staticmethod
    def needed(settings: Settings) -> bool:
        """Whether VPSs of this control plane install from the package (then it is built at
        start, so the first VPS does not wait for it)."""
        local = settings.local_provider and settings.local_provider_agent == "package"
        return local or settings.api_advertise_url is not None

    async def warm(self) -> None:
        """Build now; a failure is logged here and met again (as a 503) when a VPS asks."""
        try:
            built = await self.wheelhouse()
        except PackageError as exc:
            log.warning("agent package: %s", exc)
        else:  # debug: at start-up nothing may follow the admin key line (make run ends there)
            log.debug("agent package %s ready in %s", built.version, built.directory)

    async def wheelhouse(self) -> Wheelhouse:
        async with self._lock:
            if self._built is None:
                try:
                    self._built = await asyncio.to_thread(
                        build, self.cache, self.extra, self.restic
                    )
                except (OSError, subprocess.SubprocessError) as exc:  # a cache not writable, …
                    raise PackageError(str(exc)) from None
            return self._built
