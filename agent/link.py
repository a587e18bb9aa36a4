"""One stream to the control plane: hello, heartbeats, metric batches, commands, rotation.

A single writer task owns the stream's send side (gRPC allows one write at a time); the
other tasks only queue messages and nudge it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from agent import __version__
from agent.commands import CommandRunner
from agent.identity import Credentials, IdentityStore, key_and_csr
from agent.outbox import Outbox
from agent.spool import Spool
from agent.waiting import woken
from mailfleet.agent.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)
CAPABILITIES = ("heartbeat", "metrics", "commands", "mail_counts")
HELLO_TIMEOUT_SECONDS = 30
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.enable_retries", 0),
]


class Rotated(Exception):
    """The certificate was renewed: reconnect at once with the new one."""


class Intervals:
    """What the control plane agreed in its hello reply (until then, the shipped defaults)."""

    def __init__(self) -> None:
        self.heartbeat = 10.0
        self.metrics = 15.0
        self.mail_counts = 0.0  # 0: the control plane has not asked for them
        self.changed = asyncio.Event()
        self.hello = asyncio.Event()  # set at every hello reply (the sampler clears changed)


def rotation_time(credentials: Credentials, rng: random.Random) -> datetime:
    """A random point between 70 % and 90 % of the certificate's lifetime (client-go's rule)."""
    lifetime = credentials.not_after - credentials.not_before
    return credentials.not_before + lifetime * rng.uniform(0.7, 0.9)


class Link:
    def __init__(
        self,
        address: str,
        store: IdentityStore,
        spool: Spool,
        outbox: Outbox,
        commands: CommandRunner,
        intervals: Intervals,
    ) -> None:
        self.address = address
        self.store, self.spool, self.outbox, self.commands = store, spool, outbox, commands
        self.intervals = intervals
        self._rng = random.Random()  # noqa: S311 - spreading rotations, not cryptography
        self._rotate_at: dict[bytes, datetime] = {}

    async def run(self, credentials: Credentials, connected: asyncio.Event) -> None:
        """Hold one stream until it ends. Raises ``Rotated`` after a certificate renewal."""
        creds = grpc.ssl_channel_credentials(
            root_certificates=credentials.ca_pem,
            private_key=credentials.key_pem,
            certificate_chain=credentials.certificate_pem,
        )
        channel = grpc.aio.secure_channel(self.address, creds, options=CHANNEL_OPTIONS)
        call = agent_pb2_grpc.AgentLinkStub(channel).Connect()
        tasks: list[asyncio.Task[None]] = []
        try:
            await call.write(
                agent_pb2.AgentMessage(
                    hello=agent_pb2.Hello(
                        agent_version=__version__,
                        capabilities=CAPABILITIES,
                        hostname=socket.gethostname(),
                    )
                )
            )
            reply = await asyncio.wait_for(call.read(), HELLO_TIMEOUT_SECONDS)
            if not isinstance(reply, agent_pb2.ControlMessage) or not reply.HasField("hello"):
                raise ConnectionError("the control plane did not answer hello")
            self._agree(reply.hello)
            connected.set()
            log.info("connected to %s as server %s", self.address, reply.hello.server_id)
            tasks = [
                asyncio.create_task(self._read(call)),
                asyncio.create_task(self._write(call)),
                asyncio.create_task(self._rotate(channel, credentials)),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise what ended the stream (Rotated, RPC errors)
        finally:
            connected.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            call.cancel()
            await channel.close()

    def _agree(self, hello: agent_pb2.HelloReply) -> None:
        if hello.heartbeat_interval_ms:
            self.intervals.heartbeat = hello.heartbeat_interval_ms / 1000
        if hello.metrics_interval_ms:
            self.intervals.metrics = hello.metrics_interval_ms / 1000
        agreed = "mail_counts" in hello.capabilities
        self.intervals.mail_counts = hello.mail_counts_interval_ms / 1000 if agreed else 0.0
        self.intervals.changed.set()
        self.intervals.hello.set()

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:  # type: ignore[type-arg]
        while True:
            message = await call.read()
            if not isinstance(message, agent_pb2.ControlMessage):
                return  # EOF: the control plane closed the stream
            kind = message.WhichOneof("body")
            if kind == "command":
                self.commands.receive(message.command)
            elif kind == "cancel":
                self.commands.cancel(message.cancel.id)
            elif kind == "metric_ack":
                await asyncio.to_thread(self.spool.acknowledge, message.metric_ack.sequence)

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:  # type: ignore[type-arg]
        sent_metrics = 0
        next_heartbeat = time.monotonic()
        while True:
            # Clear before draining: a message queued while we write sets it again, so the
            # wait below returns at once instead of sitting until the next heartbeat.
            self.outbox.kick.clear()
            if time.monotonic() >= next_heartbeat:
                stamp = Timestamp()
                stamp.GetCurrentTime()
                beat = agent_pb2.Heartbeat(sent_at=stamp)
                await call.write(agent_pb2.AgentMessage(heartbeat=beat))
                next_heartbeat = time.monotonic() + self.intervals.heartbeat
            for message in self.outbox.drain():
                await call.write(message)
            for sequence, payload in await asyncio.to_thread(self.spool.pending, 256):
                if sequence > sent_metrics:
                    batch = agent_pb2.MetricBatch.FromString(payload)
                    await call.write(agent_pb2.AgentMessage(metrics=batch))
                    sent_metrics = sequence
            wait = max(0.0, next_heartbeat - time.monotonic())
            await woken(self.outbox.kick, wait)

    async def _rotate(self, channel: grpc.aio.Channel, credentials: Credentials) -> None:
        when = self._rotate_at.setdefault(
            credentials.certificate_pem, rotation_time(credentials, self._rng)
        )
        await asyncio.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))
        key_pem, csr_pem = await key_and_csr(socket.gethostname())
        response = await agent_pb2_grpc.AgentLinkStub(channel).RenewCertificate(
            agent_pb2.RenewRequest(csr_pem=csr_pem), timeout=30
        )
        renewed = Credentials(
            server_id=credentials.server_id,
            key_pem=key_pem,
            certificate_pem=response.certificate_pem,
            ca_pem=response.ca_chain_pem or credentials.ca_pem,
        )
        self.store.save(renewed)
        log.info("certificate renewed; valid until %s", renewed.not_after.isoformat())
        raise Rotated()
