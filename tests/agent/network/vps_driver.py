"""Runs inside a test's VPS namespace: the agent's network commands and outbound connections.

One JSON request per stdin line, one JSON answer per stdout line:
``{"call": kind, "payload": {...}}`` → the handler's result (``{"error": ...}`` on CommandError);
``{"reapply": true}`` → what a starting agent does (a fresh ``Network`` over the same file);
``{"stop": true}`` → what a stopping agent does (saves the day's counts);
``{"connect": [host, port], "count": n}`` → per connection, what the far end saw or why not.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from agent.errors import CommandError
from agent.network.commands import Network
from agent.network.nft import Nft

CONNECT_TIMEOUT = 2.0


async def connect(host: str, port: int) -> dict[str, Any]:
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), CONNECT_TIMEOUT
        )
    except ConnectionRefusedError:
        outcome: dict[str, Any] = {"outcome": "refused"}
    except TimeoutError:
        outcome = {"outcome": "timeout"}
    except OSError as exc:
        outcome = {"outcome": f"error: {exc}"}
    else:
        try:
            line = await asyncio.wait_for(reader.readline(), CONNECT_TIMEOUT)
            outcome = {"outcome": "connected", "seen": line.decode().strip()}
        finally:
            writer.close()
    return {**outcome, "ms": round((time.monotonic() - started) * 1000)}


async def answer(state_path: Path, request: dict[str, Any]) -> Any:
    """A new ``Network`` per request: all it knows is in the file and the kernel."""
    network = Network(state_path, Nft(request.get("nft_binary", "nft")))
    if "call" in request:
        handler = network.handlers()[request["call"]]
        return await handler(request.get("payload", {}), lambda percent, message: None)
    if "reapply" in request:
        return await network.reapply()
    if "stop" in request:
        return await network.save_counts()
    host, port = request["connect"]
    return [await connect(host, port) for _ in range(request.get("count", 1))]


def main() -> None:
    state_path = Path(sys.argv[1])
    for line in sys.stdin:
        try:
            reply = {"result": asyncio.run(answer(state_path, json.loads(line)))}
        except CommandError as exc:
            reply = {"error": str(exc)}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
