"""Messages waiting for the stream writer, plus the nudge that wakes it."""

from __future__ import annotations

import asyncio
from collections import deque

from mailfleet.agent.v1 import agent_pb2


class Outbox:
    def __init__(self) -> None:
        self._messages: deque[agent_pb2.AgentMessage] = deque()
        self.kick = asyncio.Event()

    def put(self, message: agent_pb2.AgentMessage) -> None:
        self._messages.append(message)
        self.kick.set()

    def drain(self) -> list[agent_pb2.AgentMessage]:
        messages = list(self._messages)
        self._messages.clear()
        return messages
