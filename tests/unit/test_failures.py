"""Which failures are a dependency's (retried, never dead-lettered) and which a record's."""

from __future__ import annotations

import socket

import httpx
import pytest
from aiokafka import errors as ke
from clickhouse_connect.driver import exceptions as ch
from minio.error import S3Error, ServerError
from pydantic import BaseModel, ValidationError

from infra.local import free_port
from libs.failures import Backoff, DependencyError, dependency_of
from libs.storage.clickhouse import ClickHouseStore


def _s3_error(code: str) -> S3Error:
    return S3Error(None, code, "msg", "/b/o", "req", "host")  # type: ignore[arg-type]


def _http_status(status: int) -> httpx.HTTPStatusError:
    req = httpx.Request("POST", "http://hook.example/x")
    return httpx.HTTPStatusError("x", request=req, response=httpx.Response(status, request=req))


def _validation_error() -> ValidationError:
    class M(BaseModel):
        n: int

    try:
        M(n="many")  # type: ignore[arg-type]
    except ValidationError as e:
        return e
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "exc, expected",
    [
        (ch.OperationalError("Error executing HTTP request attempt 1"), "clickhouse"),
        (ch.DatabaseError("Memory limit exceeded", code=241), "clickhouse"),
        (ch.DatabaseError("Too many parts", code=252), "clickhouse"),
        (ch.DatabaseError("HTTP driver received HTTP status 503"), "clickhouse"),
        (ke.KafkaConnectionError("no broker"), "kafka"),
        (ke.KafkaTimeoutError(), "kafka"),
        (ke.OutOfOrderSequenceNumber(), "kafka"),
        (ke.NotLeaderForPartitionError(), "kafka"),
        (ServerError("502 Bad Gateway", 502), "object-store"),
        (_s3_error("ServiceUnavailable"), "object-store"),
        (_s3_error("SlowDown"), "object-store"),
        (httpx.ConnectError("refused"), "network"),
        (httpx.ReadTimeout("slow"), "network"),
        (_http_status(503), "http"),
        (_http_status(429), "http"),
        (ConnectionRefusedError(111, "refused"), "network"),
        (TimeoutError(), "network"),
        (socket.gaierror(-2, "Name or service not known"), "network"),
        (DependencyError("x", "every account is rate-limited"), "x"),
    ],
)
def test_a_dependency_failure_is_named(exc, expected):
    assert dependency_of(exc) == expected


@pytest.mark.parametrize(
    "exc",
    [
        ch.DatabaseError("Cannot parse input: expected '\\t'", code=27),  # the row's fault
        ch.DatabaseError("Unknown identifier", code=47),
        ke.MessageSizeTooLargeError(),
        ke.RecordTooLargeError(),
        _s3_error("NoSuchBucket"),
        _s3_error("AccessDenied"),
        _http_status(404),
        _http_status(400),
        ValueError("bad record"),
        KeyError("post_id"),
        _validation_error(),
    ],
)
def test_a_records_own_fault_is_not_a_dependency(exc):
    assert dependency_of(exc) is None


def test_the_cause_chain_decides():
    try:
        try:
            raise ConnectionResetError(104, "reset by peer")
        except ConnectionResetError as inner:
            raise RuntimeError("insert failed") from inner
    except RuntimeError as outer:
        assert dependency_of(outer) == "network"
    # A record's error raised while handling a dependency's keeps the record's verdict.
    try:
        try:
            raise ke.MessageSizeTooLargeError()
        except ke.MessageSizeTooLargeError as inner:
            raise RuntimeError("send failed") from inner
    except RuntimeError as outer:
        assert dependency_of(outer) is None


def test_a_clickhouse_server_that_is_not_there_is_a_dependency_failure():
    """The exception clickhouse-connect really raises when nothing answers on the port."""
    store = ClickHouseStore(f"http://default:@127.0.0.1:{free_port()}/default")
    with pytest.raises(Exception) as got:
        store.command_sync("SELECT 1")
    assert dependency_of(got.value) == "clickhouse", repr(got.value)


def test_backoff_grows_with_full_jitter_up_to_its_cap():
    b = Backoff(base_s=1.0, cap_s=8.0)
    for ceiling in [1, 2, 4, 8, 8, 8]:
        assert 0.5 <= b.next_delay() <= ceiling
    many = [Backoff(1.0, 8.0) for _ in range(200)]
    for x in many:
        for _ in range(4):
            x.next_delay()
    assert len({round(x.next_delay(), 3) for x in many}) > 100  # spread, not in step
    b.reset()
    assert b.attempts == 0 and b.next_delay() <= 1.0
