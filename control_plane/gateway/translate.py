"""Protobuf messages ↔ the domain's plain values; the only place that knows both."""

from __future__ import annotations

import json
import uuid
from datetime import UTC
from typing import Any

from control_plane.commands.service import Delivery
from mailfleet.agent.v1 import agent_pb2

FINAL_STATES = {
    agent_pb2.COMMAND_STATE_SUCCEEDED: "succeeded",
    agent_pb2.COMMAND_STATE_FAILED: "failed",
    agent_pb2.COMMAND_STATE_CANCELLED: "cancelled",
    agent_pb2.COMMAND_STATE_TIMED_OUT: "timed_out",
}


def _optionals(sample: agent_pb2.MetricSample) -> dict[str, Any]:
    """Fields agents send only when they have them (proto3 ``optional``): absent → None
    (an agent's first sample has no rates; older agents' spooled samples have none)."""
    has = sample.HasField
    return {
        "net_rx_bytes_per_second": (
            sample.net_rx_bytes_per_second if has("net_rx_bytes_per_second") else None
        ),
        "net_tx_bytes_per_second": (
            sample.net_tx_bytes_per_second if has("net_tx_bytes_per_second") else None
        ),
        "disk_read_bytes_per_second": (
            sample.disk_read_bytes_per_second if has("disk_read_bytes_per_second") else None
        ),
        "disk_write_bytes_per_second": (
            sample.disk_write_bytes_per_second if has("disk_write_bytes_per_second") else None
        ),
        "mail_queue_messages": (sample.mail_queue_messages if has("mail_queue_messages") else None),
    }


def sample_rows(
    tenant_id: uuid.UUID, server_id: uuid.UUID, batch: agent_pb2.MetricBatch
) -> list[dict[str, Any]]:
    return [
        {
            "server_id": server_id,
            "tenant_id": tenant_id,
            "sampled_at": sample.sampled_at.ToDatetime(tzinfo=UTC),
            "batch_sequence": batch.sequence,
            "cpu_percent": sample.cpu_percent,
            "load1": sample.load1,
            "load5": sample.load5,
            "load15": sample.load15,
            "memory_total_bytes": sample.memory_total_bytes,
            "memory_used_bytes": sample.memory_used_bytes,
            "memory_available_bytes": sample.memory_available_bytes,
            "swap_total_bytes": sample.swap_total_bytes,
            "swap_used_bytes": sample.swap_used_bytes,
            "disk_read_bytes": sample.disk_read_bytes,
            "disk_write_bytes": sample.disk_write_bytes,
            "net_rx_bytes": sample.net_rx_bytes,
            "net_tx_bytes": sample.net_tx_bytes,
            "process_count": sample.process_count,
            **_optionals(sample),
            "filesystems": json.dumps(
                [
                    {
                        "mountpoint": fs.mountpoint,
                        "device": fs.device,
                        "fstype": fs.fstype,
                        "total_bytes": fs.total_bytes,
                        "used_bytes": fs.used_bytes,
                        "free_bytes": fs.free_bytes,
                        "inodes_total": fs.inodes_total,
                        "inodes_used": fs.inodes_used,
                    }
                    for fs in sample.filesystems
                ]
            ),
        }
        for sample in batch.samples
    ]


def mail_counts_report(counts: agent_pb2.MailCounts) -> dict[str, Any]:
    """A ``MailCounts`` message in the fields of a ``mail.stats`` answer (one reader for
    both: the feature validates them)."""
    return {
        "days": [
            {
                "day": row.day,
                "source_ip": row.source_ip,
                "sender_domain": row.sender_domain,
                "sent": row.sent,
                "deferred": row.deferred,
                "bounced": row.bounced,
            }
            for row in counts.days
        ],
        "log": {"found": counts.log_found, "lines_read": counts.lines_read},
    }


def command_message(delivery: Delivery) -> agent_pb2.ControlMessage:
    return agent_pb2.ControlMessage(
        command=agent_pb2.Command(
            id=str(delivery.command_id),
            kind=delivery.kind,
            payload_json=delivery.payload.encode(),
            timeout_ms=int(delivery.timeout_seconds * 1000),
            attempt=delivery.attempt,
        )
    )


def cancel_message(command_id: uuid.UUID) -> agent_pb2.ControlMessage:
    return agent_pb2.ControlMessage(cancel=agent_pb2.CancelCommand(id=str(command_id)))
