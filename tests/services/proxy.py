"""A tiny TCP proxy for fault tests: put it between the components and a server, then cut it.

    with TcpProxy("127.0.0.1", 5432) as proxy:        # listens on 127.0.0.1:proxy.port
        ...                                           # point the database URL at proxy.port
        proxy.cut()                                   # refuse new connections, reset open ones
        proxy.restore()                               # listen again on the same port

Modes of :meth:`TcpProxy.cut`:

- ``refuse``: nothing listens on the port any more (clients get ECONNREFUSED at once), and
  every open connection is reset (RST, as when a server process dies).
- ``reset``: the port still accepts, but each new connection is reset right away; open
  connections are reset too.

The proxy runs an asyncio loop in a daemon thread; every method is called from the test's
thread and returns when the change has taken effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Any, Self

_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, timeout 0: close() sends RST


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    writer.transport.abort()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1",
                 listen_port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = listen_port
        self.mode = "pass"
        self.accepted = 0  # connections accepted while passing
        self.refused = 0  # connections reset in "reset" mode
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)

    # -- control (test thread) -----------------------------------------------------------
    def start(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self, mode: str = "refuse") -> None:
        """Stop passing traffic: ``refuse`` (stop listening) or ``reset`` (accept, then RST)."""
        assert mode in ("refuse", "reset"), mode
        self._call(self._cut(mode))

    def restore(self) -> None:
        """Pass traffic again (listening on the same port)."""
        self._call(self._restore())

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._cut("refuse"))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def open_connections(self) -> int:
        return len(self._conns) // 2

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- the loop (proxy thread) ---------------------------------------------------------
    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.listen_host, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _cut(self, mode: str) -> None:
        self.mode = mode
        if mode == "refuse" and self._server is not None:
            self._server.close()  # the listening socket goes at once; wait_closed would wait for clients
            self._server = None
        elif mode == "reset" and self._server is None:
            await self._listen()
        for writer in list(self._conns):
            _reset(writer)
        self._conns.clear()

    async def _restore(self) -> None:
        self.mode = "pass"
        if self._server is None:
            await self._listen()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode != "pass":
            self.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, asyncio.TimeoutError):
            _reset(writer)
            return
        if self.mode != "pass":  # cut while we were connecting
            _reset(writer)
            _reset(up_writer)
            return
        self.accepted += 1
        self._conns.update((writer, up_writer))
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._conns.discard(w)
                if not w.transport.is_closing():
                    w.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            # One side ended: end the other too (a half-open database connection helps nobody).
            if not writer.transport.is_closing():
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()
                writer.transport.abort()
