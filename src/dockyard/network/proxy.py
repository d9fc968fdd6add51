"""The userland proxy: carries a container's published ports from host sockets to the container.

Run as ``python -m dockyard.network.proxy SPEC_JSON`` with the host sockets
inherited as open file descriptors (``ports.reserve`` bound them, and TCP ones
already listen). SPEC_JSON is a list of ``{"fd", "Protocol", "ContainerIp",
"ContainerPort"}`` objects. One process serves all ports of one container.

The network service starts it only for ports published on an IPv6 host
address, such as ``[::1]``. Containers have IPv4 addresses only, and IPv6 has
no equivalent of ``route_localnet`` to route ``::1`` out of the host, so the
kernel cannot DNAT those. Ports on IPv4 host addresses, 127.0.0.1 included,
are DNATed by nftables instead.

It runs until SIGTERM. A UDP client gets its own socket towards the
container, closed after ``UDP_IDLE_SECONDS`` without traffic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
from typing import Any

log = logging.getLogger("dockyard.network.proxy")

UDP_IDLE_SECONDS = 60.0
CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _serve_tcp(sock: socket.socket, target: tuple[str, int]) -> asyncio.AbstractServer:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError as error:
            log.warning("connection to %s:%d failed: %s", target[0], target[1], error)
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        client_writer.close()
        upstream_writer.close()

    return await asyncio.start_server(handle, sock=sock)


class _UpstreamProtocol(asyncio.DatagramProtocol):
    """The socket towards the container for one UDP client; replies go back through the host socket."""

    def __init__(self, front: asyncio.DatagramTransport, client: Any) -> None:
        self.front = front
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.last_used = asyncio.get_running_loop().time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.last_used = asyncio.get_running_loop().time()
        self.front.sendto(data, self.client)


class _FrontProtocol(asyncio.DatagramProtocol):
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.transport: asyncio.DatagramTransport | None = None
        self.clients: dict[Any, _UpstreamProtocol] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        asyncio.ensure_future(self._forward(data, addr))

    async def _forward(self, data: bytes, client: Any) -> None:
        upstream = self.clients.get(client)
        if upstream is None:
            loop = asyncio.get_running_loop()
            assert self.transport is not None
            _, upstream = await loop.create_datagram_endpoint(
                lambda: _UpstreamProtocol(self.transport, client), remote_addr=self.target  # type: ignore[arg-type]
            )
            self.clients[client] = upstream
        upstream.last_used = asyncio.get_running_loop().time()
        assert upstream.transport is not None
        upstream.transport.sendto(data)

    async def expire(self) -> None:
        while True:
            await asyncio.sleep(UDP_IDLE_SECONDS / 4)
            now = asyncio.get_running_loop().time()
            for client, upstream in list(self.clients.items()):
                if now - upstream.last_used > UDP_IDLE_SECONDS and upstream.transport is not None:
                    upstream.transport.close()
                    del self.clients[client]


async def serve(specs: list[dict[str, Any]]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    keep: list[Any] = []
    for spec in specs:
        target = (spec["ContainerIp"], int(spec["ContainerPort"]))
        if spec["Protocol"] == "tcp":
            sock = socket.socket(fileno=int(spec["fd"]))
            sock.setblocking(False)
            keep.append(await _serve_tcp(sock, target))
        else:
            sock = socket.socket(fileno=int(spec["fd"]))
            sock.setblocking(False)
            _, front = await loop.create_datagram_endpoint(lambda t=target: _FrontProtocol(t), sock=sock)
            keep.append(asyncio.ensure_future(front.expire()))  # type: ignore[attr-defined]
    await stop.wait()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s proxy: %(message)s")
    specs = json.loads(argv[0])
    asyncio.run(serve(specs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
