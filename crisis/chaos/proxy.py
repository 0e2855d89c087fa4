"""A TCP proxy the suite controls: put it between the worker and Kafka or Postgres, then cut the line.

Two ways to cut, because clients notice them differently:

- ``blackhole`` (a network partition): bytes stop flowing both ways on every open connection, new
  connections are accepted and then never answered. Nothing tells the client: only its own
  timeouts do. On ``restore`` the connections that lived through the cut are reset, as a firewall
  or NAT that lost its state would do, and new ones work.
- ``reset`` (a host that went away): every open connection gets a TCP reset at once, and new ones
  are reset as soon as they are accepted, until ``restore``.

The proxy runs its own event loop in a daemon thread, so a test blocked in ``subprocess.wait`` or
``time.sleep`` never stalls the traffic it forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Literal

from crisis.services import free_port

CutMode = Literal["blackhole", "reset"]
_CHUNK = 64 * 1024


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a polite FIN: the peer sees the connection die."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Link:
    """One client connection and, once forwarded, its connection to the target."""

    client: asyncio.StreamWriter
    target: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        _reset(self.client)
        if self.target is not None:
            _reset(self.target)


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port`` until told otherwise."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.connections_accepted = 0
        self._links: set[_Link] = set()
        self._cut: CutMode | None = None
        self._flowing = asyncio.Event()  # created here, used only on the proxy's loop
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy-{self.port}", daemon=True)

    @property
    def cut_mode(self) -> CutMode | None:
        return self._cut

    def start(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    def cut(self, mode: CutMode = "blackhole") -> None:
        """Cut the line (see the module docstring); returns once open connections are frozen or reset."""
        asyncio.run_coroutine_threadsafe(self._set_cut(mode), self._loop).result(10)

    def restore(self) -> None:
        """Let traffic through again; connections that lived through a blackhole are reset."""
        asyncio.run_coroutine_threadsafe(self._set_cut(None), self._loop).result(10)

    async def _set_cut(self, mode: CutMode | None) -> None:
        previous, self._cut = self._cut, mode
        if mode is None:
            if previous == "blackhole":
                self._reset_all()
            self._flowing.set()
        elif mode == "blackhole":
            self._flowing.clear()
        else:
            self._flowing.set()
            self._reset_all()

    def _reset_all(self) -> None:
        for link in list(self._links):
            link.reset()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        link = _Link(writer)
        if self._cut == "reset":
            _reset(writer)
            return
        self._links.add(link)
        if self._cut == "blackhole":
            return  # held open, never answered; reset on restore
        try:
            target_reader, link.target = await asyncio.open_connection(*self.target)
        except OSError:
            self._links.discard(link)
            _reset(writer)
            return
        link.tasks = [asyncio.create_task(self._pipe(reader, link.target, link)),
                      asyncio.create_task(self._pipe(target_reader, writer, link))]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()  # a blackhole that began while we read: hold the bytes
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            if link in self._links:
                self._links.discard(link)
                for task in link.tasks:
                    if task is not asyncio.current_task():
                        task.cancel()
                for side in (link.client, link.target):
                    if side is not None:
                        side.close()

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            self._reset_all()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
