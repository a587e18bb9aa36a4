"""The agent runs on VPSs and never imports control-plane code, nor the control plane the
agent's: the shared ``mailfleet`` package (protos, the restic rules, cgroupfs) is the contract."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agent"
CONTROL_PLANE = ROOT / "control_plane"


def imported_modules(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(), filename=str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offenders(package: Path, forbidden: str) -> dict[str, list[str]]:
    sources = list(package.rglob("*.py"))
    assert sources
    found = {
        str(path.relative_to(package)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] == forbidden
        )
        for path in sources
    }
    return {k: v for k, v in found.items() if v}


def test_agent_never_imports_the_control_plane() -> None:
    assert offenders(AGENT, "control_plane") == {}


def test_control_plane_never_imports_the_agent() -> None:
    assert offenders(CONTROL_PLANE, "agent") == {}


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from control_plane.settings import Settings\nimport control_plane.db\n")
    assert imported_modules(bad) == {"control_plane.settings", "control_plane.db"}
