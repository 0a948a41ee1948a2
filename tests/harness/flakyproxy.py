"""A fault-injecting TCP proxy on loopback: the network cuts real clients meet, made repeatable.

    async with FlakyProxy(server_port, reset_bytes=(1 << 20, 4 << 20)) as proxy:   # RST every 1-4 MB
        ... connect to proxy.target ...
    proxy.mode = "blackhole"   # from now on: accept connections, never forward a byte
    FlakyProxy(server_port, blackhole_after=1)   # the first connection works (until its reset), no other does

- "reset": every connection is forwarded both ways and reset (RST to both sides, as a load balancer or
  NAT dropping it) once a random number of bytes in `reset_bytes` went from the upstream to the client.
- "blackhole": connections are accepted and held open, nothing is forwarded, nothing is closed.
- "forward": a plain proxy (to measure the proxy's own cost, or to `cut()` its connections when a test says).

Bounded: at most `max_connections` connections at once (more are reset at once), reads of 64 KiB with
back-pressure (drain) so memory stays at a few buffers per connection. Loopback only. `in_thread()` runs
one on its own event loop for callers that block (a benchmark waiting on a subprocess).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Literal

Mode = Literal["reset", "blackhole", "forward"]
_READ = 64 * 1024


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), not FIN: an abrupt cut."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(Exception):
        writer.transport.abort()


class FlakyProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<upstream_port>; see the module docstring."""

    def __init__(
        self,
        upstream_port: int,
        *,
        mode: Mode = "reset",
        reset_bytes: tuple[int, int] = (1 << 20, 4 << 20),
        seed: int = 28,
        max_connections: int = 64,
        blackhole_after: int | None = None,
    ) -> None:
        if not 0 < reset_bytes[0] <= reset_bytes[1]:
            raise ValueError("reset_bytes must be (low, high) with 0 < low <= high")
        self.upstream_port = upstream_port
        self.mode: Mode = mode
        self.reset_bytes = reset_bytes
        self.max_connections = max_connections
        self.blackhole_after = blackhole_after  # connections served before switching to "blackhole"
        self.port = 0
        self.connections = 0  # accepted
        self.resets = 0  # connections this proxy reset after their byte allowance
        self.cuts = 0  # calls of cut() while serving
        self.blackholed = 0
        self.bytes_down = 0  # upstream -> client, forwarded
        self._rng = random.Random(seed)
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None
        self._closing = asyncio.Event()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> FlakyProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._closing.set()
        self._reset_open()
        await self._server.wait_closed()

    def cut(self) -> None:
        """Reset every open connection now (new ones follow `mode`)."""
        self.cuts += 1
        self._reset_open()

    def _reset_open(self) -> None:
        for writer in list(self._open):
            _reset(writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= self.max_connections or self._closing.is_set():
            _reset(writer)
            return
        self.connections += 1
        if self.blackhole_after is not None and self.connections > self.blackhole_after:
            self.mode = "blackhole"
        self._open.add(writer)
        try:
            if self.mode == "blackhole":
                self.blackholed += 1
                await self._closing.wait()  # hold it: the kernel buffers what the client sends, nobody reads it
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                return
            self._open.add(up_writer)
            try:
                allowance = self._rng.randint(*self.reset_bytes) if self.mode == "reset" else None
                up = asyncio.ensure_future(self._pipe(reader, up_writer, None, count=False))
                down = asyncio.ensure_future(self._pipe(up_reader, writer, allowance))
                await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
                if down.done() and not down.cancelled() and down.result():
                    self.resets += 1
                for task in (up, down):
                    task.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
            finally:
                _reset(up_writer)
                self._open.discard(up_writer)
        finally:
            _reset(writer)
            self._open.discard(writer)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, allowance: int | None, *, count: bool = True
    ) -> bool:
        """Copy until EOF or an error (False), or until `allowance` bytes went through (True: reset now)."""
        try:
            while data := await src.read(_READ):
                if allowance is not None:
                    if len(data) >= allowance:
                        dst.write(data[:allowance])
                        self.bytes_down += allowance
                        with contextlib.suppress(Exception):
                            await dst.drain()
                        return True
                    allowance -= len(data)
                if count:
                    self.bytes_down += len(data)
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        return False


@contextlib.contextmanager
def in_thread(upstream_port: int, **options: object) -> Iterator[FlakyProxy]:
    """A FlakyProxy served by its own event loop in a daemon thread (stopped on exit)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="flakyproxy", daemon=True)
    thread.start()
    try:

        async def make() -> FlakyProxy:
            return await FlakyProxy(upstream_port, **options).__aenter__()  # type: ignore[arg-type]

        proxy = asyncio.run_coroutine_threadsafe(make(), loop).result(10)
        try:
            yield proxy
        finally:
            asyncio.run_coroutine_threadsafe(proxy.__aexit__(None, None, None), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
