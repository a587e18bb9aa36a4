"""The agent link (gateway) knows no feature, and no feature knows the gateway.

They meet in ``control_plane.commands.handlers``: features register handlers there and ask
for delivery with ``handlers.wake``; only the process wiring (``serve``, the API app) holds
both.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CONTROL_PLANE = Path(__file__).resolve().parents[2] / "control_plane"
# What the link may use: the command queue, storage, identity and certificates, the server
# row it keeps heartbeats on, and its own metric stream (a capability of the protocol).
GATEWAY_MAY_USE = {"gateway", "commands", "db", "enrollment", "vault", "servers", "metrics"}
GATEWAY_MAY_USE |= {"errors", "settings", "waiting"}  # modules, not features
WIRING = {"control_plane.server", "control_plane.api.app", "control_plane.api.context"}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> set[str]:
    """Every control_plane module ``path`` imports; ``from a import b`` counts as ``a.b`` too."""
    package = module_name(path.parent / "__init__.py", root).split(".")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*anchor, node.module] if node.module else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "control_plane"}


def feature_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def offences(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        for imported in sorted(imports(path, root)):
            if feature_of(module) == "gateway":
                if feature_of(imported) not in GATEWAY_MAY_USE:
                    found.append(f"{module} imports {imported}")
            elif feature_of(imported) == "gateway" and module not in WIRING:
                found.append(f"{module} imports {imported}")
    return found


def test_the_gateway_imports_no_feature_and_no_feature_imports_the_gateway() -> None:
    assert (CONTROL_PLANE / "gateway" / "sessions.py").exists()
    assert offences(CONTROL_PLANE) == []


def test_the_check_sees_both_directions(tmp_path: Path) -> None:
    root = tmp_path / "control_plane"
    (root / "gateway").mkdir(parents=True)
    (root / "mail").mkdir()
    (root / "gateway" / "sessions.py").write_text(
        "from control_plane.mail import service\nfrom ..commands import handlers\n"
    )
    (root / "mail" / "routes.py").write_text("from control_plane import gateway\n")
    (root / "mail" / "ok.py").write_text("from control_plane.commands import handlers\n")
    assert offences(root) == [
        "control_plane.gateway.sessions imports control_plane.mail",
        "control_plane.gateway.sessions imports control_plane.mail.service",
        "control_plane.mail.routes imports control_plane.gateway",
    ]


def test_serve_registers_the_features_link_handlers() -> None:
    """Handlers register when their feature's module is imported: serve must import them."""
    check = (
        "import control_plane.server\n"
        "from control_plane.commands import handlers\n"
        "assert handlers.handles_event(handlers.AGENT_CONNECTED), 'agent connected'\n"
        "assert handlers.handles_results('mailu.install'), 'mailu.install'\n"
        "assert handlers.domain_owners(), 'mail domain owner'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
