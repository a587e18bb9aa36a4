"""A ``docker`` executable double: Docker CLI + Compose v2 as MailFleet's agent uses them.

Only tests/e2e/test_health_alerts.py still uses it: its VPS's mail ports must be the test's
own TLS listeners (which a stand-in MailU on a real engine would hold). Everything else runs
MailU on a real Docker engine (tests/support/docker_engine.py, mailu_images.py).

Put ``install(directory, state)`` 's directory first on the agent's PATH. The double keeps
its state in a directory (``FAKE_DOCKER_STATE``): ``calls.jsonl`` (every invocation, argv
and outcome), ``project-<hash of the project directory>.json`` (the services it "runs" for
each VPS's MailU directory) and ``config.json`` (failure
modes a test switches on: ``daemon_down``, ``pull_error``, ``unhealthy`` services,
``healthy_after`` seconds, ``queue`` size).

It follows the real contract where the agent depends on it:

- ``docker version --format …`` prints the server version, or fails the way the CLI does
  when the daemon is unreachable; ``docker compose version --short`` prints e.g. 2.29.7;
- ``docker compose --project-name P --project-directory D --file F <command>`` parses and
  validates F the way Compose would reject it (bad YAML, unknown keys used by MailFleet's
  template missing, relative bind mounts, an ``env_file`` that is missing), plus MailU's
  own rules (every MailU image pinned to one release, mail ports bound to one address,
  ``mailu.env`` mode 0600 with the required settings);
- ``pull`` fails with the registry's "manifest unknown" message when told to;
  ``image inspect`` knows only images pulled through it, ``ps``/``inspect`` answer for the
  services it runs (the agent reads state from them);
- ``up --detach`` recreates only services whose configuration (or env file) changed and
  reports which, as Compose does; services start "starting" and become "healthy" after
  ``healthy_after`` seconds (or "unhealthy" when told);
- ``ps --all --format json`` prints one JSON object per line (Compose ≥ 2.21) with Name,
  Service, State, Health, Status, Image, Project;
- ``exec -T smtp postqueue -j`` prints one JSON object per queued message;
- ``down`` removes the services.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ENGINE_VERSION = "27.3.1"
COMPOSE_VERSION = "2.29.7"
MAILU_SERVICES = {"front", "resolver", "admin", "imap", "smtp", "antispam", "oletools", "redis"}
REQUIRED_ENV = {"SECRET_KEY", "DOMAIN", "HOSTNAMES", "POSTMASTER", "TLS_FLAVOR", "API_TOKEN"}


def install(directory: Path, state: Path) -> Path:
    """Write a ``docker`` executable into ``directory`` that runs this double on ``state``."""
    directory.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[2]
    script = directory / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f"FAKE_DOCKER_STATE='{state}' PYTHONPATH='{root}' "
        f"exec '{sys.executable}' -m tests.fakes.docker_cli \"$@\"\n"
    )
    script.chmod(0o755)
    return script


def configure(state: Path, **options: Any) -> None:
    path = state / "config.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(options)
    path.write_text(json.dumps(current))


def calls(state: Path) -> list[dict[str, Any]]:
    path = state / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def project_file(state: Path, directory: Path | None = None) -> Path:
    """The running services of the project in ``directory`` (the only one if omitted)."""
    if directory is None:
        found = sorted(p for p in state.glob("project-*.json") if ".mailu-api" not in p.name)
        return found[0] if found else state / "project-none.json"
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    return state / f"project-{digest}.json"


def services(state: Path, directory: Path | None = None) -> dict[str, Any]:
    path = project_file(state, directory)
    if path.name.endswith(".mailu-api.json"):
        return {}
    return dict(json.loads(path.read_text())) if path.exists() else {}


def api_state_file(state: Path, directory: Path) -> Path:
    """Where the Mailu API double of the project in ``directory`` keeps its data."""
    return project_file(state, directory).with_suffix(".mailu-api.json")


def start_admin_api(state: Path, directory: Path, service: dict[str, Any]) -> int | None:
    """Start the Mailu API double where the admin port is published (in the caller's
    network namespace: a local VPS's own loopback), with the token from ``mailu.env``."""
    ports = [str(p) for p in service.get("ports", []) if str(p).endswith(":8080")]
    if not ports:
        return None
    host, port, _ = ports[0].rsplit(":", 2)
    env_text = (directory / str(service["env_file"])).read_text()
    token = next(
        line.split("=", 1)[1] for line in env_text.splitlines() if line.startswith("API_TOKEN=")
    )
    root = Path(__file__).resolve().parents[2]
    with (state / "mailu-api.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.mailu_api", port, token,
             str(api_state_file(state, directory)), host],
            cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # answer only once the "container" listens
        with socket.socket() as probe:
            if probe.connect_ex((host, int(port))) == 0:
                return process.pid
        time.sleep(0.05)
    raise Failed(f"the admin container did not start listening on {host}:{port}")


def stop_container(container: dict[str, Any], grace: float = 5.0) -> None:
    """Stop the container's process (if it has one) and wait until it is gone."""
    pid = container.get("pid")
    if not pid:
        return
    try:
        os.kill(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.kill(int(pid), 0)
            time.sleep(0.02)
        os.kill(int(pid), signal.SIGKILL)
    except ProcessLookupError:
        return


def stop_all(state: Path) -> None:
    """Stop every "container" process the double started (a test's cleanup)."""
    for path in state.glob("project-*.json"):
        if path.name.endswith(".mailu-api.json"):
            continue
        for container in json.loads(path.read_text()).values():
            stop_container(container)


class Failed(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Double:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.config: dict[str, Any] = (
            json.loads((state / "config.json").read_text())
            if (state / "config.json").exists()
            else {}
        )

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        try:
            out = self.dispatch(argv)
        except Failed as exc:
            self.record(argv, f"failed: {exc}")
            return exc.code, "", f"{exc}\n"
        self.record(argv, "ok")
        return 0, out, ""

    def record(self, argv: list[str], outcome: str) -> None:
        with (self.state / "calls.jsonl").open("a") as handle:
            handle.write(json.dumps({"argv": argv, "outcome": outcome, "at": time.time()}) + "\n")

    def dispatch(self, argv: list[str]) -> str:
        if argv[:1] == ["version"]:
            self.require_daemon()
            return ENGINE_VERSION + "\n"
        if argv[:2] == ["compose", "version"]:
            return (
                COMPOSE_VERSION + "\n"
                if "--short" in argv
                else f"Docker Compose version v{COMPOSE_VERSION}\n"
            )
        if argv[:1] == ["compose"]:
            return self.compose(argv[1:])
        if argv[:2] == ["image", "inspect"]:
            self.require_daemon()
            if argv[-1] not in self.images():
                raise Failed(f"Error: No such image: {argv[-1]}")
            return "sha256:" + hashlib.sha256(argv[-1].encode()).hexdigest() + "\n"
        if argv[:1] == ["pull"]:  # a slow registry answers its first pull slowly
            self.require_daemon()
            if self.images():
                self.config["pull_seconds"] = 0
            self.pull({"services": {"front": {"image": argv[-1]}}})
            (self.state / "images.json").write_text(json.dumps([*self.images(), argv[-1]]))
            return ""
        if argv[:1] == ["ps"]:  # the agent's: every MailU container the double runs
            self.require_daemon()
            return "".join(f"{key}\n" for key in self.containers())
        if argv[:1] == ["inspect"]:
            found = self.containers()
            return json.dumps([found[key] for key in argv[1:] if key in found])
        raise Failed(f"docker: '{argv[0] if argv else ''}' is not a docker command.")

    def images(self) -> list[str]:
        path = self.state / "images.json"
        return list(json.loads(path.read_text())) if path.exists() else []

    def containers(self) -> dict[str, dict[str, Any]]:
        """``docker inspect`` entries of every service the double runs, by container id."""
        found: dict[str, dict[str, Any]] = {}
        for path in sorted(self.state.glob("project-*.json")):
            if path.name.endswith(".mailu-api.json"):
                continue
            for entry in self.ps_entries(json.loads(path.read_text())):
                key = f"{path.stem}-{entry['Service']}"
                found[key] = {
                    "Id": key,
                    "Config": {
                        "Image": entry["Image"],
                        "Labels": {
                            "com.docker.compose.project": "mailu",
                            "com.docker.compose.service": entry["Service"],
                        },
                    },
                    "State": {
                        "Status": entry["State"],
                        **({"Health": {"Status": entry["Health"]}} if entry["Health"] else {}),
                    },
                }
        return found

    def require_daemon(self) -> None:
        if self.config.get("daemon_down"):
            raise Failed(
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                "Is the docker daemon running?"
            )

    # -- compose ---------------------------------------------------------------------------

    def compose(self, argv: list[str]) -> str:
        options: dict[str, str] = {}
        while argv and argv[0].startswith("--"):
            options[argv[0]] = argv[1]
            argv = argv[2:]
        if options.get("--project-name") != "mailu":
            raise Failed("the double only knows the project 'mailu'")
        directory = Path(options["--project-directory"])
        document = self.load(Path(options["--file"]), directory)
        self.require_daemon()
        command, rest = argv[0], argv[1:]
        if command == "pull":
            return self.pull(document)
        if command == "up":
            return self.up(document, directory, rest)
        if command == "ps":
            return self.ps(directory)
        if command == "exec":
            return self.exec(directory, rest)
        if command == "restart":
            running = services(self.state, directory)
            for name in rest or list(running):
                if name not in running:
                    raise Failed(f"no such service: {name}")
                running[name]["started"] = time.time()
                running[name]["restarts"] = running[name].get("restarts", 0) + 1
            project_file(self.state, directory).write_text(json.dumps(running))
            return ""
        if command == "down":
            for container in services(self.state, directory).values():
                stop_container(container)
            project_file(self.state, directory).unlink(missing_ok=True)
            return ""
        raise Failed(f'unknown docker command: "compose {command}"')

    def load(self, path: Path, directory: Path) -> dict[str, Any]:
        try:
            document = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise Failed(f"open {path}: no such file or directory") from None
        except yaml.YAMLError as exc:
            raise Failed(f"yaml: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
            raise Failed(f"{path}: services must be a mapping")
        services_ = document["services"]
        missing = MAILU_SERVICES - set(services_)
        if missing:
            raise Failed(f"MailU project lacks services: {sorted(missing)}")
        versions = set()
        for name, service in services_.items():
            image = str(service.get("image", ""))
            if image.startswith("ghcr.io/mailu/"):
                _, _, tag = image.rpartition(":")
                if not tag or tag == "latest":
                    raise Failed(f"service {name}: image {image} is not pinned")
                versions.add(tag)
            elif not image:
                raise Failed(f"service {name} has neither an image nor a build context specified")
            for volume in service.get("volumes", []):
                source = str(volume).split(":")[0]
                if not source.startswith("/"):
                    raise Failed(f"service {name}: bind mount {source} is not absolute")
            env_file = service.get("env_file")
            if env_file is not None:
                self.check_env(directory / str(env_file))
        if len(versions) != 1:
            raise Failed(f"MailU images mix releases: {sorted(versions)}")
        for port in services_["front"].get("ports", []):
            if str(port).count(":") != 2:
                raise Failed(f"front publishes {port} on every address; bind it to one")
        return document

    def check_env(self, path: Path) -> None:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            raise Failed(
                f"env file {path} not found: stat {path}: no such file or directory"
            ) from None
        if mode != 0o600:
            raise Failed(f"{path} holds secrets but has mode {mode:o}")
        keys = {
            line.split("=", 1)[0]
            for line in path.read_text().splitlines()
            if "=" in line and not line.startswith("#")
        }
        if not keys >= REQUIRED_ENV:
            raise Failed(f"{path} lacks {sorted(REQUIRED_ENV - keys)}")

    def pull(self, document: dict[str, Any]) -> str:
        time.sleep(float(self.config.get("pull_seconds", 0)))  # a slow registry
        broken = self.config.get("pull_error")
        if broken:
            image = document["services"]["front"]["image"]
            raise Failed(
                f"Error response from daemon: manifest for {image} not found: "
                "manifest unknown: manifest unknown",
                18,
            )
        return ""

    def up(self, document: dict[str, Any], directory: Path, argv: list[str]) -> str:
        if "--detach" not in argv and "-d" not in argv:
            raise Failed("the double runs only detached")
        running = services(self.state, directory)
        now = time.time()
        result: dict[str, Any] = {}
        report = []
        for name, service in document["services"].items():
            digest = hashlib.sha256(json.dumps(service, sort_keys=True).encode())
            if service.get("env_file"):
                digest.update((directory / service["env_file"]).read_bytes())
            config_hash = digest.hexdigest()
            old = running.get(name)
            if old is not None and old["config_hash"] == config_hash:
                result[name] = old
                report.append(f"Container mailu-{name}-1 Running")
                continue
            result[name] = {
                "image": service["image"],
                "config_hash": config_hash,
                "started": now,
                "healthcheck": str(service["image"]).startswith("ghcr.io/mailu/"),
            }
            if old is not None:
                stop_container(old)
            if name == "admin":  # MailU's admin serves the REST API: run the API double
                result[name]["pid"] = start_admin_api(self.state, directory, service)
            report.append(f"Container mailu-{name}-1 {'Recreated' if old else 'Created'}")
        project_file(self.state, directory).write_text(json.dumps(result))
        sys.stderr.write("".join(f" {line}\n" for line in report))
        return ""

    def ps(self, directory: Path) -> str:
        entries = self.ps_entries(services(self.state, directory))
        return "".join(json.dumps(entry) + "\n" for entry in entries)

    def ps_entries(self, running: dict[str, Any]) -> list[dict[str, Any]]:
        lines = []
        for name, service in running.items():
            health = ""
            if service["healthcheck"]:
                if name in self.config.get("unhealthy", []):
                    health = "unhealthy"
                elif time.time() - service["started"] >= float(
                    self.config.get("healthy_after", 0.3)
                ):
                    health = "healthy"
                else:
                    health = "starting"
            status = "Up 1 second" + (f" ({health})" if health else "")
            lines.append(
                {
                    "Name": f"mailu-{name}-1",
                    "Service": name,
                    "Project": "mailu",
                    "State": "running",
                    "Health": health,
                    "Status": status,
                    "Image": service["image"],
                    "ExitCode": 0,
                }
            )
        return lines

    def exec(self, directory: Path, argv: list[str]) -> str:
        if argv[:1] == ["-T"]:
            argv = argv[1:]
        service, command = argv[0], argv[1:]
        if service not in services(self.state, directory):
            raise Failed(f'service "{service}" is not running')
        if command == ["postqueue", "-j"]:
            count = int(self.config.get("queue", 0))
            return "".join(
                json.dumps({"queue_name": "deferred", "queue_id": f"Q{n}"}) + "\n"
                for n in range(count)
            )
        raise Failed(f"the double cannot run {command}")


def main() -> None:
    double = Double(Path(os.environ["FAKE_DOCKER_STATE"]))
    code, out, err = double.run(sys.argv[1:])
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(code)


if __name__ == "__main__":
    main()
