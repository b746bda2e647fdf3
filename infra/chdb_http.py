"""ClickHouse's HTTP interface in front of the embedded ClickHouse engine (chdb).

    python -m infra.chdb_http --data-dir DIR [--host 127.0.0.1] [--port 8123]

No ClickHouse server can be installed here (no package registry has one; Debian's is 18.16,
older than DateTime64), yet production reaches ClickHouse over HTTP with an `http://` DSN. This
server lets that path run for real: the same ClickHouse engine as the embedded default, behind
the protocol clickhouse-connect's HTTP client speaks (https://clickhouse.com/docs/interfaces/http):

* the query is the `query` URL parameter, or the body when there is none; the data of an
  `INSERT ... FORMAT fmt` is the body after the query (in the URL, or the body's first line,
  as clickhouse-connect sends inserts) and reaches the engine as `FROM INFILE`;
* or both in a multipart/form-data body (fields `query` and `param_<name>`), as
  clickhouse-connect sends a query whose parameters are too long for a URL (an IN list of a
  few hundred ids);
* `database`, `param_<name>` (server-side query parameters), `default_format` (TabSeparated
  unless the query names a FORMAT), and any other parameter is a query setting, except the
  transport ones a server answers itself (session_id, query_id, wait_end_of_query, ...);
* request bodies in Content-Encoding gzip, deflate, zstd or lz4 (frame), as the client sends
  compressed inserts; answers are sent uncompressed, which HTTP allows whatever was accepted;
* an error is HTTP 500 with `Code: N. DB::Exception: ...` and `X-ClickHouse-Exception-Code`;
  each answer carries X-ClickHouse-Query-Id, -Format, -Timezone and a -Summary whose counts
  are all zero (the engine does not report them on this path; XGet does not read them).

One engine owns a data path per process, so queries run one at a time on one chdb connection.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import re
import tempfile
import threading
import uuid
import zlib
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger("xget.chdb_http")

# Parameters the HTTP layer answers itself; never passed to the engine as settings.
TRANSPORT_PARAMS = {
    "query",
    "database",
    "default_format",
    "session_id",
    "session_timeout",
    "session_check",
    "query_id",
    "wait_end_of_query",
    "send_progress_in_http_headers",
    "http_headers_progress_interval_ms",
    "enable_http_compression",
    "http_zlib_compression_level",
    "compress",
    "decompress",
    "user",
    "password",
    "quota_key",
    "buffer_size",
    "client_protocol_version",
    "cancel_http_readonly_queries_on_client_close",
    "add_http_cors_header",
    "http_response_buffer_size",
    "role",
}
_FORMAT_AT_END = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_INSERT = re.compile(
    r"^\s*INSERT\s+INTO\s+(.+?)\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE | re.DOTALL
)
_BODY_INSERT = re.compile(
    rb"^\s*INSERT\s+INTO\s+.+?\s+FORMAT\s+\w+[ \t]*(\r?\n)?", re.IGNORECASE | re.DOTALL
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")


def decompress(body: bytes, encoding: str) -> bytes:
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return body
    if enc == "gzip":
        return gzip.decompress(body)
    if enc == "deflate":
        return zlib.decompress(body)
    # A streamed insert is compressed block by block: the body is a series of frames, and
    # each must be read (one-frame decoders would silently drop every block after the first).
    if enc == "zstd":
        try:  # the zstd module clickhouse-connect compresses with
            from compression import zstd  # Python 3.14+
        except ImportError:
            from backports import zstd

        return zstd.decompress(body)  # reads every concatenated frame
    if enc == "lz4":
        import lz4.frame

        out, rest = bytearray(), body
        while rest:
            d = lz4.frame.LZ4FrameDecompressor()
            out += d.decompress(rest)
            if not d.eof:
                raise ValueError("truncated lz4 frame")
            rest = d.unused_data
        return bytes(out)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class Engine:
    """One chdb connection on a data path; one query at a time."""

    def __init__(self, data_dir: str) -> None:
        import chdb

        os.makedirs(data_dir, exist_ok=True)
        self.conn = chdb.connect(data_dir)
        self.lock = threading.Lock()

    def run(
        self,
        sql: str,
        fmt: str,
        params: dict[str, str],
        database: str | None,
        settings: dict[str, str],
    ) -> bytes:
        """`settings` hold for this query only, as a server's per-request settings do: set on
        the connection before it and set back after it."""
        with self.lock:
            # every request names its database (or gets `default`), as with a real server;
            # the one engine connection would otherwise keep the previous request's
            self._q(f"USE `{(database or 'default').replace('`', '')}`")
            previous = (
                self._current([k for k in settings if _NAME.fullmatch(k)]) if settings else {}
            )
            unknown = [k for k in settings if k not in previous]
            if unknown:
                raise ValueError(
                    f"Code: 115. DB::Exception: Unknown setting {unknown[0]}. (UNKNOWN_SETTING)"
                )
            try:
                for k, v in settings.items():
                    self._q(f"SET {k} = {_literal(v)}")
                return self._q(sql, params, fmt)
            finally:
                for k in settings:
                    self._q(f"SET {k} = {_literal(previous[k])}")

    def _q(self, sql: str, params: dict | None = None, fmt: str = "TabSeparated") -> bytes:
        res = self.conn.query(sql, fmt, params=params or {})
        return res.bytes() if hasattr(res, "bytes") else bytes(res)

    def _current(self, names: list[str]) -> dict[str, str]:
        # names are identifiers (checked by the caller); parameters travel as text
        out = self._q(
            "SELECT name, value FROM system.settings WHERE has({n:Array(String)}, name)"
            " FORMAT JSONCompactEachRow",
            {"n": "[" + ",".join(f"'{n}'" for n in names) + "]"},
        )
        return dict(json.loads(line) for line in out.decode().splitlines() if line)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The named fields of a multipart/form-data body."""
    msg = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    out = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True)
            out[str(name)] = payload.decode() if isinstance(payload, bytes) else str(payload or "")
    return out


def _literal(value: str) -> str:
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Handler(BaseHTTPRequestHandler):
    engine: Engine  # set on the class by serve()
    protocol_version = "HTTP/1.1"
    server_version = "chdb-http"

    def log_message(self, fmt: str, *args) -> None:  # access log at debug level only
        log.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/ping" or "query" not in dict(parse_qsl(url.query)):
            return self._send(200, b"Ok.\n", {})  # the health answer of a ClickHouse server
        self._query(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        try:
            body = decompress(body, self.headers.get("Content-Encoding", ""))
        except Exception as e:  # noqa: BLE001 - a client error, answered as ClickHouse does
            return self._error(400, 0, f"Code: 0. DB::Exception: cannot decompress body: {e}")
        self._query(body)

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _query(self, body: bytes) -> None:
        args = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        ctype = self.headers.get("Content-Type", "")
        if ctype.lower().startswith("multipart/form-data"):
            args.update(form_fields(ctype, body))  # the query and its parameters, as fields
            body = b""
        query_id = args.get("query_id") or str(uuid.uuid4())
        params = {k[len("param_") :]: v for k, v in args.items() if k.startswith("param_")}
        settings = {
            k: v
            for k, v in args.items()
            if k not in TRANSPORT_PARAMS and not k.startswith("param_")
        }
        database = args.get("database") or self.headers.get("X-ClickHouse-Database")
        tmp_path = None
        fmt = args.get("default_format", "TabSeparated")
        try:
            if "query" in args:
                sql, data = args["query"], body
            elif head := _BODY_INSERT.match(body[:65536]):
                # "INSERT INTO t (...) FORMAT fmt\n" then the data, all in the body
                sql, data = head.group(0).decode().strip(), body[head.end() :]
            else:
                sql, data = body.decode(), b""
            insert = _INSERT.match(sql) if data else None
            if insert is not None:
                # the data goes to the engine as a file (INFILE)
                fd, tmp_path = tempfile.mkstemp(suffix=".insert")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                sql = (
                    f"INSERT INTO {insert.group(1)} FROM INFILE '{tmp_path}' "
                    f"FORMAT {insert.group(2)}"
                )
            else:
                if data:
                    sql = f"{sql}\n{data.decode()}"
                if not sql.strip():
                    return self._error(400, 0, "Code: 0. DB::Exception: empty query")
                named = _FORMAT_AT_END.search(sql)
                if named:
                    fmt, sql = named.group(1), sql[: named.start()]
            data = self.engine.run(sql, fmt, params, database, settings)
        except Exception as e:  # noqa: BLE001 - the engine's error, as ClickHouse answers it
            text = str(e)
            code = int(m.group(1)) if (m := _ERROR_CODE.search(text)) else 0
            if not text.startswith("Code:"):
                text = f"Code: {code}. DB::Exception: {text}"
            return self._error(500, code, text)
        finally:
            if tmp_path is not None:
                os.unlink(tmp_path)
        self._send(
            200,
            data,
            {
                "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Format": fmt,
                "X-ClickHouse-Timezone": "UTC",
                "X-ClickHouse-Summary": json.dumps(
                    {
                        "read_rows": "0",
                        "read_bytes": "0",
                        "written_rows": "0",
                        "written_bytes": "0",
                        "result_rows": "0",
                        "result_bytes": "0",
                    }
                ),
                "Content-Type": "text/plain; charset=UTF-8"
                if fmt.startswith("TabSeparated")
                else "application/octet-stream",
            },
        )

    def _error(self, status: int, code: int, text: str) -> None:
        self._send(
            status,
            (text.rstrip() + "\n").encode(),
            {"X-ClickHouse-Exception-Code": str(code), "Content-Type": "text/plain; charset=UTF-8"},
        )

    def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(data_dir: str, host: str, port: int) -> None:
    engine = Engine(data_dir)
    handler = type("BoundHandler", (Handler,), {"engine": engine})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    log.info("ClickHouse HTTP interface on http://%s:%d (chdb data in %s)", host, port, data_dir)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        engine.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m infra.chdb_http",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8123)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve(a.data_dir, a.host, a.port)


if __name__ == "__main__":
    main()
