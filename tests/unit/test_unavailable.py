"""Which failures are a dependency being down (503 + Retry-After) and which stay a 500."""

from __future__ import annotations

import socket

import httpx
import pytest
import urllib3.exceptions
from aiokafka.errors import KafkaConnectionError, NodeNotReadyError, RecordTooLargeError
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from services.task_gateway.unavailable import DependencyUnavailable, classify


def caused(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as e:
            raise outer from e
    except BaseException as e:  # noqa: BLE001
        return e


@pytest.mark.parametrize(
    "exc, dependency, reason",
    [
        (
            caused(
                OperationalError("Error HTTPConnectionPool(host='10.0.0.5', port=8123)"),
                ConnectionRefusedError(111, "refused"),
            ),
            "clickhouse",
            "ConnectionRefusedError",
        ),
        (KafkaConnectionError("no broker"), "kafka", "KafkaConnectionError"),
        (NodeNotReadyError("node 1"), "kafka", "NodeNotReadyError"),
        (urllib3.exceptions.MaxRetryError(None, "/bucket"), "network", "MaxRetryError"),
        (
            caused(RuntimeError("put failed"), DatabaseError("Too many parts", code=252)),
            "clickhouse",
            "DatabaseError",
        ),
        (httpx.ConnectTimeout("slow"), "network", "ConnectTimeout"),
        (socket.gaierror(-2, "Name or service not known"), "network", "gaierror"),
        (caused(RuntimeError("wrapped"), TimeoutError()), "network", "TimeoutError"),
        (DependencyUnavailable("kafka", "no answer within 10 s"), "kafka", "no answer within 10 s"),
    ],
)
def test_unreachable_dependencies_are_classified(exc, dependency, reason):
    found = classify(exc)
    assert found is not None and found[:2] == (dependency, reason)
    assert "10.0.0.5" not in found[1]  # the client's reason holds no internal address


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bug"),
        FileNotFoundError("x"),
        DatabaseError("Code: 62. Syntax error"),
        RecordTooLargeError("too large"),
    ],
)
def test_other_failures_are_not_a_dependency_outage(exc):
    assert classify(exc) is None
