"""A real HTTP server playing the client's webhook in tests: records every request, checks the
signature, and answers as told (fail with a status for a while, pause, accept)."""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from infra.local import free_port
from libs.webhooks import SIGNATURE_HEADER, verify


@dataclass
class Received:
    body: dict
    idempotency_key: str | None
    signature_ok: bool
    status: int  # what the server answered
    host: str | None = None  # the Host header
    answer: str = ""  # the `status` of a 200 answer ("received", or "busy" when told)


@dataclass
class WebhookServer:
    secret: str
    port: int = field(default_factory=free_port)
    fail_status: int | None = None  # answer this to every request while set
    fail_times: int = 0  # ...or to the next N requests only
    retry_after: str | None = None
    pause_after_batches: set[str] = field(default_factory=set)  # next_batch_allowed=false
    busy_times: int = 0  # answer 200 {"status": "busy"} (not the design's "received") N times
    delay_s: float = 0.0  # hold each request this long before answering (a slow client)
    tls: ssl.SSLContext | None = None  # serve HTTPS with this server context
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self):
        self._lock = threading.Lock()
        self._release = threading.Event()  # set on exit: held requests end at once
        self.arrived = 0  # requests received, answered or not
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sig_ok = verify(server.secret, raw, self.headers.get(SIGNATURE_HEADER, ""))
                with server._lock:
                    server.arrived += 1
                if server.delay_s:
                    server._release.wait(server.delay_s)
                with server._lock:
                    status = 200
                    if server.fail_status is not None:
                        status = server.fail_status
                    elif server.fail_times > 0:
                        server.fail_times -= 1
                        status = 500
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = {"_raw": raw.decode(errors="replace")}
                    server.requests.append(
                        Received(
                            body,
                            self.headers.get("Idempotency-Key"),
                            sig_ok,
                            status,
                            self.headers.get("Host"),
                        )
                    )
                    allowed = body.get("batch_id") not in server.pause_after_batches
                    answer = "received"
                    if status == 200 and server.busy_times > 0:
                        server.busy_times -= 1
                        answer = "busy"
                    server.requests[-1].answer = answer
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status != 200 and server.retry_after:
                    self.send_header("Retry-After", server.retry_after)
                self.end_headers()
                if status == 200:
                    # The design's answer: {"status": "received", "message", "next_batch_allowed"}
                    self.wfile.write(
                        json.dumps(
                            {
                                "status": answer,
                                "message": "数据接收成功" if answer == "received" else "try later",
                                "next_batch_allowed": allowed,
                            }
                        ).encode()
                    )
                else:
                    self.wfile.write(b'{"error": "try later"}')

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.status == 200 and r.answer == "received"]

    def all(self) -> list[Received]:
        with self._lock:
            return list(self.requests)
