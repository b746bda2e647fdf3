"""infra/chdb_http: ClickHouse's HTTP interface on the chdb engine, as clickhouse-connect's
HTTP client (the `http://` DSN) uses it."""

from __future__ import annotations

import urllib.error
import urllib.request

import clickhouse_connect
import pytest


@pytest.mark.parametrize("compression", ["lz4", "zstd", "gzip", None])
def test_large_streamed_insert_arrives_whole_in_every_encoding(clickhouse_http_dsn, compression):
    """A big insert is streamed block by block, each block its own compressed frame: every
    row of every frame is stored."""
    client = clickhouse_connect.get_client(dsn=clickhouse_http_dsn, compress=compression or False)
    client.command("CREATE TABLE big (id UInt32, s String) ENGINE = MergeTree ORDER BY id")
    rows = [(i, f"{i:08d}" * 250) for i in range(20_000)]  # ~40 MB: many blocks
    client.insert("big", rows, column_names=["id", "s"])
    assert client.query("SELECT count(), uniqExact(id), sum(length(s)) FROM big").result_rows == [
        (20_000, 20_000, 20_000 * 2_000)
    ]


def test_settings_hold_for_their_request_only(clickhouse_http_dsn):
    client = clickhouse_connect.get_client(dsn=clickhouse_http_dsn)
    default = client.command("SELECT getSetting('max_threads')")
    assert client.command("SELECT getSetting('max_threads')", settings={"max_threads": 3}) == 3
    assert client.command("SELECT getSetting('max_threads')") == default


def test_errors_come_back_as_clickhouse_errors(clickhouse_http, clickhouse_http_dsn):
    client = clickhouse_connect.get_client(dsn=clickhouse_http_dsn)
    with pytest.raises(Exception, match="code: 60"):
        client.command("SELECT * FROM no_such_table")
    req = urllib.request.Request(f"{clickhouse_http}/?no_such_setting=1", data=b"SELECT 1")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 500 and e.value.headers["X-ClickHouse-Exception-Code"] == "115"
    assert b"Unknown setting no_such_setting" in e.value.read()
    # and the server keeps answering
    assert client.command("SELECT 1") == 1
