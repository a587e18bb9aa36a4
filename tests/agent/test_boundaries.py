"""The agent runs on VPSs and never imports control-plane code (protos are the contract)."""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "agent"


def imported_modules(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(), filename=str(source))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_agent_never_imports_the_control_plane() -> None:
    sources = list(AGENT.rglob("*.py"))
    assert sources
    offenders = {
        str(path.relative_to(AGENT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] == "control_plane"
        )
        for path in sources
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from control_plane.settings import Settings\nimport control_plane.db\n")
    assert imported_modules(bad) == {"control_plane.settings", "control_plane.db"}
