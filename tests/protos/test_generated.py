"""Committed generated modules match the .proto files (regenerate: python protos/generate.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PROTOS = Path(__file__).resolve().parents[2] / "protos"


def load_generator() -> object:
    spec = importlib.util.spec_from_file_location("protos_generate", PROTOS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_modules_are_fresh(tmp_path: Path) -> None:
    load_generator().generate(tmp_path)  # type: ignore[attr-defined]
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*_pb2*")}
    assert fresh, "protoc produced nothing"
    for relative, content in fresh.items():
        committed = PROTOS / relative
        assert committed.exists(), f"{relative} is not committed"
        assert committed.read_bytes() == content, f"{relative} is stale: run protos/generate.py"


def test_generated_modules_import_from_the_installed_package() -> None:
    from mailfleet.agent.v1 import agent_pb2, agent_pb2_grpc

    message = agent_pb2.AgentMessage(hello=agent_pb2.Hello(agent_version="1.0"))
    assert agent_pb2.AgentMessage.FromString(message.SerializeToString()) == message
    assert hasattr(agent_pb2_grpc, "AgentLinkServicer")
