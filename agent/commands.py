"""Running commands exactly once in effect: the journal decides, handlers do the work.

Delivery is at least once, so the same command may arrive again (after a reconnect, a
control-plane restart, a lost ack). A finished command is answered from the journal; a
command interrupted by an agent crash is reported failed, never started a second time.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config import DEFAULT_MAIL_LOG, DEFAULT_STATE_DIR, under_root
from agent.errors import CommandError
from agent.journal import CommandJournal
from agent.network.commands import Network
from agent.network.state import FILE_NAME as NETWORK_STATE
from mailfleet.agent.v1 import agent_pb2

log = logging.getLogger(__name__)
State = agent_pb2.CommandState
Progress = Callable[[int, str], None]
Handler = Callable[[dict[str, Any], Progress], Awaitable[dict[str, Any]]]
RootedHandler = Callable[[Path, dict[str, Any], Progress], Awaitable[dict[str, Any]]]
Send = Callable[[agent_pb2.AgentMessage], None]


async def ping(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Answer at once, or after ``delay_seconds`` (like ``ping -w``: holds a command slot to
    check timeouts and cancellation end to end)."""
    delay = float(payload.get("delay_seconds") or 0)
    if delay:
        progress(0, f"waiting {delay:g} s")
        await asyncio.sleep(delay)
    return {"pong": True, "agent_time": time.time(), "echo": payload.get("echo")}


async def collect_facts_command(
    payload: dict[str, Any], progress: Progress, vps_cgroup: str | None = None
) -> dict[str, Any]:
    from agent.facts import collect_facts  # and psutil: on first use (the sampler reads /proc)

    return await asyncio.to_thread(collect_facts, __version__, vps_cgroup)


# Commands whose code the agent imports when one first arrives ("module:function"): idle, it
# holds none of MailU's, restic's, the mail log's or the probe's modules (nor what they load:
# PyYAML, cryptography for certificates). ROOTED ones are called (root, payload, progress).
ON_FIRST_USE = {"smtp.probe_out": "agent.smtp_probe:probe_out"}
ROOTED = {
    "mailu.install": "agent.mailu.install:install",
    "mailu.status": "agent.mailu.install:status",
    "mailu.uninstall": "agent.mailu.install:uninstall",
    "mailu.domain.ensure": "agent.mailu.mail:domain_ensure",
    "mailu.domain.delete": "agent.mailu.mail:domain_delete",
    "mailu.mailbox.ensure": "agent.mailu.mail:mailbox_ensure",
    "mailu.mailbox.delete": "agent.mailu.mail:mailbox_delete",
    "mailu.alias.ensure": "agent.mailu.mail:alias_ensure",
    "mailu.alias.delete": "agent.mailu.mail:alias_delete",
    "mailu.dkim.remove": "agent.mailu.mail:dkim_remove",
    "mailu.certs.install": "agent.mailu.certs:install",
    "mailu.mta_sts.set": "agent.mailu.mta_sts:set_policies",
    "backup.run": "agent.backup.commands:run",
    "backup.snapshots": "agent.backup.commands:snapshots",
    "backup.restore": "agent.backup.commands:restore",
    "backup.restore.finish": "agent.backup.commands:restore_finish",
    "backup.check": "agent.backup.commands:check",
    "backup.drill": "agent.backup.commands:drill",
    "backup.forget": "agent.backup.commands:forget",
}


def imported(target: str) -> Any:
    """The function ``"module:function"`` names (its module imported now, if not yet)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def on_first_use(target: str) -> Handler:
    async def handler(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        run: Handler = imported(target)
        return await run(payload, progress)

    return handler


def rooted_on_first_use(root: Path, target: str) -> Handler:
    async def handler(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        run: RootedHandler = imported(target)
        return await run(root, payload, progress)

    return handler


HANDLERS: dict[str, Handler] = {
    "ping": ping,
    "collect-facts": collect_facts_command,
    **{kind: on_first_use(target) for kind, target in ON_FIRST_USE.items()},
}


def handlers_for(
    root: Path,
    vps_cgroup: str | None = None,
    *,
    state_dir: Path | None = None,
    mail_log: Path | None = None,
    network: Network | None = None,
) -> dict[str, Handler]:
    """Every command this agent runs, for a machine whose filesystem starts at ``root``
    (and whose memory and CPUs are those of ``vps_cgroup``, when set); ``state_dir`` and
    ``mail_log`` are agent.toml's (already under ``root``; by default their defaults);
    ``network`` is the agent's (the one it re-applies at start), else one in ``state_dir``."""
    state = state_dir or under_root(root, DEFAULT_STATE_DIR)
    network = network or Network(state / NETWORK_STATE)
    postfix_log = mail_log or under_root(root, DEFAULT_MAIL_LOG)

    async def facts(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        return await collect_facts_command(payload, progress, vps_cgroup)

    async def ssh_authorize(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        from agent import ssh_keys

        return await asyncio.to_thread(ssh_keys.authorize, root, str(payload.get("public_key")))

    async def mail_stats(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        from agent.maillog import command as maillog

        return await maillog.mail_stats(state, postfix_log, payload, progress)

    network_handlers = network.handlers()
    snat_set = network_handlers["network.snat.set"]

    async def snat_set_counted(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
        from agent.maillog import command as maillog

        return await maillog.counted_before(state, postfix_log, snat_set)(payload, progress)

    network_handlers["network.snat.set"] = snat_set_counted
    return {
        **HANDLERS,
        "collect-facts": facts,
        "ssh.authorize": ssh_authorize,
        **{kind: rooted_on_first_use(root, target) for kind, target in ROOTED.items()},
        "mail.stats": mail_stats,
        **network_handlers,
    }


class CommandRunner:
    """Owns command tasks; they outlive any one stream, so reconnects never drop them."""

    def __init__(
        self, journal: CommandJournal, send: Send, handlers: dict[str, Handler] | None = None
    ):
        self.journal = journal
        self.send = send
        self.handlers = handlers or HANDLERS
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancel_requested: set[str] = set()
        self._interrupted = set(journal.interrupted())

    def receive(self, command: agent_pb2.Command) -> None:
        state = self.journal.state(command.id)
        if state == "finished":
            stored = self.journal.result(command.id)
            if stored is not None:
                self.send(
                    agent_pb2.AgentMessage(
                        command_update=agent_pb2.CommandUpdate.FromString(stored)
                    )
                )
            return
        if state == "started":
            if command.id in self._running:
                return  # already running here; its result will follow
            self._finish(
                command.id,
                State.COMMAND_STATE_FAILED,
                error="interrupted: the agent restarted while it ran",
            )
            return
        if not self.journal.begin(command.id):
            return
        log.info("command %s (%s) started, attempt %d", command.id, command.kind, command.attempt)
        self._running[command.id] = asyncio.create_task(
            self._run(command), name=f"command {command.id}"
        )

    def cancel(self, command_id: str) -> None:
        task = self._running.get(command_id)
        if task is not None:
            self._cancel_requested.add(command_id)
            task.cancel()

    async def _run(self, command: agent_pb2.Command) -> None:
        handler = self.handlers.get(command.kind)
        try:
            if handler is None:
                self._finish(
                    command.id,
                    State.COMMAND_STATE_FAILED,
                    error=f"unknown command kind {command.kind!r}",
                )
                return
            try:
                payload = json.loads(command.payload_json or b"{}")
            except ValueError:
                self._finish(command.id, State.COMMAND_STATE_FAILED, error="payload is not JSON")
                return
            self._progress(command.id, 0, "started")
            timeout = command.timeout_ms / 1000 if command.timeout_ms else None
            try:
                result = await asyncio.wait_for(
                    handler(payload, lambda p, m: self._progress(command.id, p, m)), timeout
                )
            except TimeoutError:
                self._finish(
                    command.id, State.COMMAND_STATE_TIMED_OUT, error=f"timed out after {timeout} s"
                )
            except asyncio.CancelledError:
                if command.id not in self._cancel_requested:
                    raise  # the agent is stopping: left "started", reported as interrupted
                self._finish(command.id, State.COMMAND_STATE_CANCELLED, error="cancelled")
            except CommandError as exc:
                self._finish(command.id, State.COMMAND_STATE_FAILED, error=str(exc))
            except Exception as exc:  # a failed command is a result, not an agent crash
                log.exception("command %s (%s) failed", command.id, command.kind)
                self._finish(
                    command.id, State.COMMAND_STATE_FAILED, error=f"{type(exc).__name__}: {exc}"
                )
            else:
                self._finish(command.id, State.COMMAND_STATE_SUCCEEDED, result=result)
        finally:
            self._running.pop(command.id, None)
            self._cancel_requested.discard(command.id)

    def _progress(self, command_id: str, percent: int, message: str) -> None:
        update = agent_pb2.CommandUpdate(
            id=command_id,
            state=State.COMMAND_STATE_RUNNING,
            progress_percent=max(0, min(100, percent)),
            progress_message=message[:500],
        )
        self.send(agent_pb2.AgentMessage(command_update=update))

    def _finish(
        self,
        command_id: str,
        state: agent_pb2.CommandState.ValueType,
        *,
        result: dict[str, Any] | None = None,
        error: str = "",
    ) -> None:
        update = agent_pb2.CommandUpdate(
            id=command_id,
            state=state,
            progress_percent=100 if state == State.COMMAND_STATE_SUCCEEDED else 0,
            result_json=json.dumps(result).encode() if result is not None else b"",
            error=error[:2000],
        )
        self.journal.finish(command_id, update.SerializeToString())
        self.send(agent_pb2.AgentMessage(command_update=update))

    async def shutdown(self, grace: float) -> None:
        """Give running commands ``grace`` seconds, then stop them (they count as interrupted)."""
        tasks = list(self._running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
