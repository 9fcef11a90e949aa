"""A fault-injecting TCP proxy that lives inside a test host's network namespace.

Toxiproxy is the usual tool for this, but it is not packaged for this project's registries and
the kernel here has no ``sch_netem``; so the cluster's database host serves PostgreSQL and Redis
through this proxy (listening on the host's outside address, forwarding to the server on the
host's loopback), and a test turns faults on and off while jobs run:

- ``latency_s``: each chunk from the server reaches the client that much later (order kept,
  throughput not serialised: the round trip grows by ``latency_s``, as Toxiproxy's latency);
- ``reset_rate``: each request (a chunk from the client: a statement, a Redis command) resets
  its connection (RST both ways) with that probability, so about 1 request in 1/rate meets a
  broken connection, pooled connections included;
- ``drop``: connections stay open but nothing passes either way, new ones included (a silent
  partition, as a dropped route: clients wait for their timeouts).

Clients at ``exempt`` addresses (the test process itself) always pass cleanly. The proxy's
asyncio loop runs in a daemon thread that first moves into the host's namespace, so every
socket it makes (listening and upstream) belongs to that host.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

_LINGER_RST = struct.pack("ii", 1, 0)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    writer.transport.abort()


class FaultProxy:
    def __init__(self, listen: tuple[str, int], target: tuple[str, int], *, enter: Callable[[], None],
                 exempt: tuple[str, ...] = (), seed: int = 31) -> None:
        self.listen = listen
        self.target = target
        self.exempt = set(exempt)
        self.latency_s = 0.0
        self.reset_rate = 0.0
        self.drop = False
        self.accepted = 0
        self.resets = 0
        self._random = random.Random(seed)
        self._enter = enter
        self._conns: set[asyncio.StreamWriter] = set()
        self._pairs: dict[asyncio.StreamWriter, asyncio.StreamWriter] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"fault-proxy-{listen[1]}", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"fault proxy on {self.listen} did not start")
        self._call(self._open())
        return self

    def set(self, *, latency_s: float = 0.0, reset_rate: float = 0.0, drop: bool = False) -> None:
        """The faults from now on (each call replaces all of them)."""
        self.latency_s, self.reset_rate = latency_s, reset_rate
        if drop != self.drop:
            self.drop = drop
            if not drop:
                self._loop.call_soon_threadsafe(self._wake_all)

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    # -- loop thread ------------------------------------------------------------------------
    def _main(self) -> None:
        self._enter()
        asyncio.set_event_loop(self._loop)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._ready.set()
        self._loop.run_forever()

    def _wake_all(self) -> None:
        self._flowing.set()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._handle, *self.listen, reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._conns):
            _reset(writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = (writer.get_extra_info("peername") or ("?",))[0]
        clean = peer in self.exempt
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
        except (OSError, asyncio.TimeoutError):
            _reset(writer)
            return
        self.accepted += 1
        self._conns.update((writer, up_writer))
        self._pairs[writer], self._pairs[up_writer] = up_writer, writer
        tasks = [asyncio.ensure_future(self._pump(reader, up_writer, clean, downstream=False)),
                 asyncio.ensure_future(self._pump(up_reader, writer, clean, downstream=True))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for w in (writer, up_writer):
                self._conns.discard(w)
                self._pairs.pop(w, None)
                if not w.transport.is_closing():
                    w.transport.abort()

    def _doom(self, writer: asyncio.StreamWriter, other: asyncio.StreamWriter | None) -> None:
        self.resets += 1
        for w in (writer, other):
            if w is not None:
                _reset(w)

    def _peer_of(self, writer: asyncio.StreamWriter) -> asyncio.StreamWriter | None:
        return self._pairs.get(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, clean: bool, *,
                    downstream: bool) -> None:
        # Chunks go through a queue stamped with their due time: latency without serialising.
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    return
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                while self.drop and not clean:
                    self._flowing.clear()
                    await self._flowing.wait()
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                if (data and not downstream and not clean and self.reset_rate
                        and self._random.random() < self.reset_rate):
                    self._doom(writer, self._peer_of(writer))
                    queue.put_nowait((0.0, b""))  # the sender ends too
                    break
                latency = self.latency_s if downstream and not clean else 0.0
                queue.put_nowait((time.monotonic() + latency, data))
                if not data:
                    break
            await sender
        except (OSError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            sender.cancel()
            if not writer.transport.is_closing():
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()
                writer.transport.abort()
