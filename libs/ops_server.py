"""The process's operations endpoint: `/metrics` (Prometheus text), `/livez`, `/readyz`.

One per process, on `Settings.metrics_port`, whatever services the process runs. A tiny
asyncio HTTP/1.1 server (no framework): it must answer while the services are busy, costs
nothing when nobody scrapes, and a port in use must not take the services down.

Readiness: components (each ConsumerLoop, the gateway's API…) register with `HEALTH` and are
ready once they joined their group / started serving; `/readyz` is 200 only when all are.
Liveness: the event loop answers, and no component reported itself broken.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from .metrics import READY
from .settings import Settings

log = logging.getLogger(__name__)


class Health:
    def __init__(self) -> None:
        self._ready: dict[str, bool] = {}
        self._broken: dict[str, str] = {}
        self._waiting: dict[str, str] = {}  # component -> the dependency failure it waits out

    def register(self, component: str) -> None:
        self._ready.setdefault(component, False)
        READY.labels(component).set(0)

    def ready(self, component: str, ready: bool = True) -> None:
        self._ready[component] = ready
        READY.labels(component).set(1 if ready else 0)

    def gone(self, component: str) -> None:
        """A component that stopped on purpose no longer counts."""
        self._ready.pop(component, None)
        self._waiting.pop(component, None)
        READY.labels(component).set(0)

    def waiting(self, component: str, cause: str | None) -> None:
        """A component waits for a failed dependency (`cause`), or no longer (None): it is
        not ready meanwhile, and /readyz says why. Not a liveness problem: it recovers."""
        if cause is None:
            self._waiting.pop(component, None)
        else:
            self._waiting[component] = cause
        READY.labels(component).set(0 if cause or not self._ready.get(component) else 1)

    def waiting_on(self) -> list[str]:
        return [f"{c}: {why}" for c, why in sorted(self._waiting.items())]

    def broken(self, component: str, why: str) -> None:
        self._broken[component] = why

    def components(self) -> dict[str, str | None]:
        """Each registered component -> None when ready, else why not."""
        out: dict[str, str | None] = {
            c: None if ok else "not ready" for c, ok in self._ready.items()
        }
        for c, why in self._waiting.items():
            out[c] = f"waiting for {why}"
        return dict(sorted(out.items()))

    def not_ready(self) -> list[str]:
        return sorted({c for c, ok in self._ready.items() if not ok} | set(self._waiting))

    def live_problems(self) -> list[str]:
        return [f"{c}: {why}" for c, why in sorted(self._broken.items())]


HEALTH = Health()


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def answer(path: str) -> bytes:
    if path == "/metrics":
        return _response("200 OK", generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
    if path == "/livez":
        problems = HEALTH.live_problems()
        if problems:
            return _response("503 Service Unavailable", ("\n".join(problems) + "\n").encode())
        return _response("200 OK", b"ok\n")
    if path == "/readyz":
        waiting = HEALTH.not_ready()
        if waiting:
            causes = "".join(f"waiting for {w}\n" for w in HEALTH.waiting_on())
            return _response(
                "503 Service Unavailable",
                ("not ready: " + ", ".join(waiting) + "\n" + causes).encode(),
            )
        return _response("200 OK", b"ready\n")
    return _response("404 Not Found", b"try /metrics, /livez or /readyz\n")


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        parts = request.split(b"\r\n", 1)[0].decode("latin-1").split()
        path = parts[1].split("?", 1)[0] if len(parts) >= 2 else "/"
        if parts and parts[0] not in ("GET", "HEAD"):
            data = _response("405 Method Not Allowed", b"GET only\n")
        else:
            data = answer(path)
        writer.write(data)
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def start_ops_server(settings: Settings) -> asyncio.AbstractServer | None:
    """Serve the endpoints, or None when turned off (port 0) or the port is taken."""
    if not settings.metrics_port:
        return None
    try:
        server = await asyncio.start_server(_handle, settings.metrics_host, settings.metrics_port)
    except OSError as e:
        log.warning(
            "metrics endpoint off in this process: %s:%d: %s",
            settings.metrics_host,
            settings.metrics_port,
            e,
        )
        return None
    log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    return server
