"""A TCP relay in front of a real server, to take that server off the network in a drill.

`down()` closes the listening socket and cuts every open connection, so clients see what they
see when a server (or its host) goes away: connections refused and reset. `up()` listens on
the same port again. The server behind keeps its data, which a real MinIO would too (the
local S3 server, moto, keeps objects in memory, so stopping it would lose them)."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from infra.local import free_port


class TcpRelay:
    def __init__(self, target_host: str, target_port: int, port: int | None = None):
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> TcpRelay:
        self._thread.start()
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        if not self._thread.is_alive():
            return
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def up(self) -> None:
        async def start():
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

        self._run(start())

    def down(self) -> None:
        async def stop():
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
            for w in list(self._conns):
                w.transport.abort()  # a reset, as when the server's host goes away
            self._conns.clear()

        self._run(stop())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._conns |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.transport.abort() if dst.transport.is_closing() else dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._conns -= {writer, up_writer}
