"""The agent process: keep enrolled, keep connected, sample metrics, run commands."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from agent.backoff import Backoff
from agent.commands import CommandRunner, handlers_for
from agent.config import AgentConfig, ConfigError, load_config
from agent.enrollment import EnrollmentError, enroll
from agent.identity import Credentials, IdentityStore, TrustError
from agent.journal import CommandJournal
from agent.link import Intervals, Link, Rotated
from agent.metrics import MetricSample, Sampler
from agent.network.commands import Network, reapply_at_start, save_counts_at_stop
from agent.network.nft import Nft
from agent.network.state import FILE_NAME as NETWORK_STATE
from agent.outbox import Outbox
from agent.spool import Spool
from agent.waiting import woken
from mailfleet.agent.v1 import agent_pb2

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_SECONDS = 10.0


def sample_to_proto(sample: MetricSample) -> agent_pb2.MetricSample:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromtimestamp(sample.timestamp, UTC))
    return agent_pb2.MetricSample(
        sampled_at=stamp,
        cpu_percent=sample.cpu_percent,
        load1=sample.load1,
        load5=sample.load5,
        load15=sample.load15,
        memory_total_bytes=sample.memory_total_bytes,
        memory_used_bytes=sample.memory_used_bytes,
        memory_available_bytes=sample.memory_available_bytes,
        swap_total_bytes=sample.swap_total_bytes,
        swap_used_bytes=sample.swap_used_bytes,
        filesystems=[
            agent_pb2.FilesystemUsage(
                mountpoint=fs.mountpoint,
                device=fs.device,
                fstype=fs.fstype,
                total_bytes=fs.total_bytes,
                used_bytes=fs.used_bytes,
                free_bytes=fs.free_bytes,
                inodes_total=fs.inodes_total,
                inodes_used=fs.inodes_used,
            )
            for fs in sample.filesystems
        ],
        disk_read_bytes=sample.disk_read_bytes,
        disk_write_bytes=sample.disk_write_bytes,
        net_rx_bytes=sample.net_rx_bytes,
        net_tx_bytes=sample.net_tx_bytes,
        process_count=sample.process_count,
        net_rx_bytes_per_second=sample.net_rx_bytes_per_second,
        net_tx_bytes_per_second=sample.net_tx_bytes_per_second,
        disk_read_bytes_per_second=sample.disk_read_bytes_per_second,
        disk_write_bytes_per_second=sample.disk_write_bytes_per_second,
        mail_queue_messages=sample.mail_queue_messages,
    )


class Agent:
    def __init__(self, config_path: Path, root: Path = Path("/")) -> None:
        self.config_path = config_path
        self.root = root
        self.config: AgentConfig = load_config(config_path, root)
        if self.config.docker_host:  # the docker CLI and Compose the agent runs use it
            os.environ["DOCKER_HOST"] = self.config.docker_host
        state = self.config.state_dir
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = IdentityStore(state)
        self.journal = CommandJournal(state / "commands.journal")
        self.spool = Spool(state / "metrics", self.config.metrics_buffer_bytes)
        self.outbox = Outbox()
        nft = Nft(self.config.nft_binary, self.config.nft_timeout_seconds)
        self.network = Network(state / NETWORK_STATE, nft)
        self.commands = CommandRunner(
            self.journal,
            self.outbox.put,
            handlers_for(
                root,
                self.config.vps_cgroup,
                state_dir=state,
                mail_log=self.config.mail_log,
                network=self.network,
            ),
        )
        self.intervals = Intervals()
        self.connected = asyncio.Event()
        self.backoff = Backoff(
            initial=self.config.backoff_initial_seconds, maximum=self.config.backoff_max_seconds
        )
        self._needs_enrollment = False

    async def run(self, stop: asyncio.Event) -> None:
        await reapply_at_start(self.network)  # a reboot left the kernel without our rules
        sampler = asyncio.create_task(self._sample(stop))
        link = asyncio.create_task(self._keep_connected(stop))
        mail_counts = asyncio.create_task(self._report_mail_counts(stop))
        try:
            await stop.wait()
        finally:
            for task in (link, mail_counts):
                task.cancel()
            await asyncio.gather(link, mail_counts, return_exceptions=True)
            await self.commands.shutdown(SHUTDOWN_GRACE_SECONDS)
            await save_counts_at_stop(self.network)  # for the re-apply after a reboot
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            self.journal.close()
            log.info("agent stopped")

    async def _credentials(self) -> Credentials:
        with contextlib.suppress(ConfigError):
            # a new join token may have arrived
            self.config = load_config(self.config_path, self.root)
        credentials = self.store.load()
        if credentials and not self._needs_enrollment and credentials.not_after > datetime.now(UTC):
            return credentials
        credentials = await enroll(self.config, self.store)
        self._needs_enrollment = False
        return credentials

    async def _keep_connected(self, stop: asyncio.Event) -> None:
        link = Link(
            self.config.address, self.store, self.spool, self.outbox, self.commands, self.intervals
        )
        while not stop.is_set():
            try:
                await link.run(await self._credentials(), self.connected)
                log.info("stream ended; reconnecting")
            except Rotated:
                self.backoff.reset()
                continue
            except grpc.aio.AioRpcError as exc:
                log.warning("control plane: %s: %s", exc.code().name, exc.details())
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    self._needs_enrollment = True  # revoked or unknown: a new token re-enrolls
            except (EnrollmentError, TrustError, ConnectionError, OSError) as exc:
                log.warning("%s", exc)
            if self.connected.is_set():
                self.backoff.reset()
            delay = self.backoff.next()
            await woken(stop, delay)

    async def _sample(self, stop: asyncio.Event) -> None:
        sampler = Sampler(
            vps_cgroup=self.config.vps_cgroup, mail_queue_dir=self.config.mail_queue_dir
        )
        next_at = time.monotonic()
        while not stop.is_set():
            started = time.monotonic()
            # Off the event loop: a sample may wait on a slow mount, the spool on an fsync.
            await asyncio.to_thread(self._sample_into_spool, sampler)
            self.outbox.kick.set()
            next_at += self.intervals.metrics
            if next_at < time.monotonic():  # fell behind (suspend, slow disk): skip, no burst
                log.warning(
                    "metric sampling fell %.1f s behind (this sample took %.1f s); skipping ahead",
                    time.monotonic() - next_at,
                    time.monotonic() - started,
                )
                next_at = time.monotonic() + self.intervals.metrics
            self.intervals.changed.clear()
            either = asyncio.create_task(self._first_of(stop.wait(), self.intervals.changed.wait()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(either, next_at - time.monotonic())
            if self.intervals.changed.is_set():  # the control plane set another interval
                next_at = time.monotonic() + self.intervals.metrics

    def _sample_into_spool(self, sampler: Sampler) -> None:
        sample = sampler.sample()
        batch = agent_pb2.MetricBatch(
            sequence=self.spool.next_sequence(), samples=[sample_to_proto(sample)]
        )
        self.spool.append(batch.SerializeToString())

    async def _report_mail_counts(self, stop: asyncio.Event) -> None:
        """Postfix's counts on the stream every interval the control plane agreed, from a
        random point in the first one so a fleet's reports spread out (in place of a
        ``mail.stats`` command per server and interval). Whole-day totals: a report lost with
        a stream is made good by the next, so none is spooled or acknowledged."""
        rng = random.Random()  # noqa: S311 - spreading reports, not cryptography
        wait: float | None = None
        while not stop.is_set():
            await self._first_of(stop.wait(), self.connected.wait())  # a hello agreed it
            interval = self.intervals.mail_counts
            if interval <= 0:  # not agreed on this stream (an older plane): the next hello
                wait = None
                self.intervals.hello.clear()
                await self._first_of(stop.wait(), self.intervals.hello.wait())
                continue
            if await woken(stop, rng.uniform(0, interval) if wait is None else wait):
                return
            wait = interval
            if not self.connected.is_set() or self.intervals.mail_counts <= 0:
                continue
            try:
                counts = await asyncio.to_thread(self._mail_counts)
            except OSError as exc:  # unreadable state or log: said, and tried next interval
                log.warning("mail counts not read: %s", exc)
                continue
            self.outbox.put(agent_pb2.AgentMessage(mail_counts=counts))

    def _mail_counts(self) -> agent_pb2.MailCounts:
        """The log's new lines counted; whole-day totals from yesterday on (the day that
        just ended gets its final figures after midnight)."""
        from agent.maillog.command import counts_since  # loaded at the first report

        now = datetime.now(UTC)
        since = now.date() - timedelta(days=1)
        counts = counts_since(self.config.state_dir, self.config.mail_log, since, now)
        return agent_pb2.MailCounts(
            days=[
                agent_pb2.MailCount(
                    day=str(row["day"]),
                    source_ip=str(row["source_ip"]),
                    sender_domain=str(row["sender_domain"]),
                    sent=int(row["sent"]),
                    deferred=int(row["deferred"]),
                    bounced=int(row["bounced"]),
                )
                for row in counts["days"]
            ],
            log_found=bool(counts["log"]["found"]),
            lines_read=int(counts["log"]["lines_read"]),
        )

    @staticmethod
    async def _first_of(*waits: Coroutine[Any, Any, Any]) -> None:
        tasks = [asyncio.ensure_future(w) for w in waits]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
