"""The API's listening socket, bound before serve starts anything (control_plane.listeners)."""

from __future__ import annotations

import asyncio
import socket

from control_plane.listeners import bind
from tests.support.ports import free_port


async def test_connections_on_a_bound_socket_have_nagle_off() -> None:
    """asyncio sets TCP_NODELAY only on sockets whose proto says TCP; on a socket made with
    proto 0 every small answer waited ~40 ms for the client's delayed ACK (the API went from
    5 ms to 50 ms a request)."""
    accepted: asyncio.Queue[int] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        await accepted.put(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    port = free_port()
    server = await asyncio.start_server(on_connect, sock=bind(f"127.0.0.1:{port}", "TEST_ADDR"))
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(accepted.get(), 5) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
