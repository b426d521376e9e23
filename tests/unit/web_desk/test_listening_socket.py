"""The desk's listening socket: every connection accepted from it sends without Nagle's delay."""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor

from cli.web_commands import listening_socket


async def _accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY on the server's side of one connection, accepted the way uvicorn accepts
    (an asyncio server on the given socket)."""
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_connection(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        own = writer.get_extra_info("socket")
        accepted.set_result(own.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connection, sock=listener)
    try:
        _reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        try:
            return await asyncio.wait_for(accepted, timeout=10)
        finally:
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


def _accepted_nodelay_of(listener: socket.socket) -> int:
    # In a thread of its own: a browser test on the same worker may keep an event loop running
    # in this one.
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, _accepted_nodelay(listener)).result(timeout=30)


def test_every_accepted_connection_has_nagle_switched_off() -> None:
    listener = listening_socket("127.0.0.1", 0)
    assert listener.getsockname()[1] != 0
    assert _accepted_nodelay_of(listener) != 0


def test_a_socket_without_its_protocol_named_would_keep_nagle_on() -> None:
    # What the desk had: asyncio leaves such connections as the kernel made them.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    assert _accepted_nodelay_of(listener) == 0
