"""Running ``nft``: every call has a deadline, and a failure is a CommandError with nft's words."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from agent.errors import CommandError
from agent.network.ruleset import FAMILY, TABLE, Live, parse

NO_SUCH_TABLE = "No such file or directory"


@dataclass(frozen=True)
class Nft:
    binary: str = "nft"
    timeout: float = 10.0

    async def run(self, *args: str, stdin: str | None = None) -> str:
        """nft's output; a non-zero exit raises CommandError with its stderr."""
        try:
            process = await asyncio.create_subprocess_exec(
                self.binary,
                *args,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise CommandError(f"cannot run {self.binary}: {exc.strerror or exc}") from None
        try:
            out, err = await asyncio.wait_for(
                process.communicate(stdin.encode() if stdin is not None else None), self.timeout
            )
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise CommandError(f"nft did not finish within {self.timeout:g} s") from None
        if process.returncode != 0:
            message = err.decode(errors="replace").strip() or f"exit status {process.returncode}"
            raise CommandError(f"nft: {message}")
        return out.decode(errors="replace")

    async def apply(self, script: str) -> None:
        """Run ``script`` as one transaction: all of it takes effect, or none."""
        await self.run("-f", "-", stdin=script)

    async def table(self) -> Live | None:
        """Our table as the kernel has it, or None when there is none (a fresh boot)."""
        try:
            listing = await self.run("-j", "list", "table", FAMILY, TABLE)
        except CommandError as exc:
            if NO_SUCH_TABLE in str(exc):
                return None
            raise
        return parse(listing)
