"""What every benchmark harness shares: where its JSON result goes.

Each harness writes ``benchmarks/results/<name>.json`` by default; ``--out`` sends it
elsewhere, which the smoke runs inside the test suite use so they never overwrite a figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def add_out_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out PATH``, defaulting to ``benchmarks/results/<name>.json``."""
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS / f"{name}.json",
        help=f"where the JSON result goes (default: benchmarks/results/{name}.json)",
    )


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write the result as indented JSON (the directory is made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
