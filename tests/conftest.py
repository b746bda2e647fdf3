"""Shared fixtures: real local infrastructure started once per test session.

* ``noida`` / ``tansu`` — a fresh broker (noida-db with data in a tmp dir / Tansu in memory)
  with the topic catalogue created under a unique per-session prefix. Yields a
  :class:`KafkaEnv` (``.bootstrap``, ``.kind``, ``.prefix``, ``.topic(spec_or_name)``,
  ``.settings(**overrides)``).
* ``s3`` — a moto_server; yields an :class:`S3Endpoint` (a ``str`` equal to ``host:port``) with
  ``.settings(bucket=None, **overrides)`` giving Settings whose object store is a fresh bucket.
* ``xsim`` — the X simulator subprocess; yields its base URL (skips if ``infra/xsim`` has no
  ``__main__`` yet).
* ``chdb_path`` — a fresh directory per test for an embedded chdb (``f"chdb://{chdb_path}"``).
  chdb allows one data path per process at a time: close every ClickHouseStore you open.
* ``make_settings(**overrides)`` — Settings isolated from ``.env``, with explicit test secrets;
  also a fixture of that name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra import local
from libs.settings import Settings
from libs.topics import CATALOGUE, TopicSpec, topic_name

SESSION_ID = uuid.uuid4().hex[:8]

# System packages the suite drives (installed by `make setup` / infra/system-packages.sh). A
# missing one fails the run at once, naming it, instead of a test timing out on it later.
SYSTEM_PARTS = {
    Settings.model_fields["chromium_path"].default: "chromium (password logins, console tests)",
    "docker-compose": "docker-compose (validates docker-compose.yml)",
}


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [
        what
        for exe, what in SYSTEM_PARTS.items()
        if not (shutil.which(exe) or (os.path.isabs(exe) and os.access(exe, os.X_OK)))
    ]
    if missing:
        pytest.exit(
            "missing system packages: " + "; ".join(missing) + ". Run `make setup` "
            "(infra/system-packages.sh installs them with apt-get).",
            returncode=4,
        )


# Services refuse to start with empty or default secrets (libs/fail_closed.py): every test
# stack gets explicit ones (a test may override them).
TEST_SECRETS = {
    "api_token": "test-api-token",
    "webhook_secret": "test-webhook-secret",
    "account_key": "test-account-key",
}


def make_settings(**overrides: Any) -> Settings:
    """Settings built only from defaults + TEST_SECRETS + overrides (+ XGET_* env vars), never
    from ``.env``."""
    return Settings(_env_file=None, **{**TEST_SECRETS, **overrides})


@pytest.fixture(name="make_settings")
def make_settings_fixture():
    return make_settings


@dataclass
class KafkaEnv:
    bootstrap: str
    kind: str  # "noida" | "tansu"
    prefix: str
    handle: local.ProcessHandle
    topics: dict[str, int] = field(default_factory=dict)
    data_dir: Path | None = None

    def topic(self, spec: TopicSpec | str) -> str:
        return topic_name(spec, self.prefix) if isinstance(spec, TopicSpec) else self.prefix + spec

    def settings(self, **overrides: Any) -> Settings:
        base: dict[str, Any] = {"kafka_bootstrap": self.bootstrap, "topic_prefix": self.prefix}
        if self.kind == "noida":
            # noida-db never expires a killed group member: see Settings.kafka_group_mode.
            # It also answers empty fetches at once: emulate the broker's long-poll.
            base.update(kafka_group_mode="assign", kafka_empty_fetch_backoff_ms=50)
        if self.kind == "tansu":
            # Tansu: no InitProducerId for idempotence; stale members linger until timeout.
            # Its ListOffsets latest is wrong: ends come from a fetch's high watermark.
            base.update(
                kafka_idempotent_producer=False,
                kafka_session_timeout_ms=6_000,
                kafka_heartbeat_interval_ms=1_000,
                kafka_end_offsets_from_fetch=True,
            )
        base.update(overrides)
        return make_settings(**base)


@pytest.fixture(scope="session")
def infra_log_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("infra-logs")


@pytest.fixture(scope="session")
def noida(tmp_path_factory, infra_log_dir) -> Iterator[KafkaEnv]:
    data = tmp_path_factory.mktemp("noida") / "kafka"
    handle = local.start_noida(data, log_dir=infra_log_dir)
    try:
        prefix = f"t{SESSION_ID}-"
        topics = local.create_topics_sync(handle.address, prefix, CATALOGUE)
        yield KafkaEnv(handle.address, "noida", prefix, handle, topics, data)
    finally:
        handle.stop()


@pytest.fixture
def restartable_noida(tmp_path, infra_log_dir) -> Iterator[local.RestartableNoida]:
    """A noida-db of the test's own (data in ``tmp_path/kafka``) that the test may SIGKILL and
    restart on the same port and data dir, or freeze (broker drills)."""
    broker = local.RestartableNoida(tmp_path / "kafka", log_dir=infra_log_dir).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def tansu(infra_log_dir) -> Iterator[KafkaEnv]:
    handle = local.start_tansu(log_dir=infra_log_dir)
    try:
        prefix = f"t{SESSION_ID}-"
        topics = local.create_topics_sync(handle.address, prefix, CATALOGUE)
        yield KafkaEnv(handle.address, "tansu", prefix, handle, topics)
    finally:
        handle.stop()


class S3Endpoint(str):
    """``host:port`` of a moto_server, with a Settings helper."""

    handle: local.ProcessHandle

    def settings(self, bucket: str | None = None, **overrides: Any) -> Settings:
        bucket = bucket or f"xget-test-{uuid.uuid4().hex[:10]}"
        base: dict[str, Any] = {
            "object_store_url": f"s3://{bucket}",
            "s3_endpoint": str(self),
            "s3_secure": False,
            "s3_access_key": "testing",
            "s3_secret_key": "testing",
            "s3_region": "us-east-1",
        }
        base.update(overrides)
        return make_settings(**base)


@pytest.fixture(scope="session")
def s3(infra_log_dir) -> Iterator[S3Endpoint]:
    handle = local.start_moto(log_dir=infra_log_dir)
    ep = S3Endpoint(handle.address)
    ep.handle = handle
    try:
        yield ep
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def xsim(infra_log_dir) -> Iterator[str]:
    if not local.xsim_available():
        pytest.skip("X simulator not built yet: infra/xsim/__main__.py is missing")
    handle = local.start_xsim(log_dir=infra_log_dir)
    try:
        yield handle.address
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def clickhouse_http(infra_log_dir, tmp_path_factory) -> Iterator[str]:
    """A ClickHouse HTTP endpoint (infra/chdb_http: the chdb engine behind ClickHouse's HTTP
    interface) for tests of the `http://` DSN; its base URL."""
    handle = local.start_chdb_http(tmp_path_factory.mktemp("chdb-http"), log_dir=infra_log_dir)
    try:
        yield handle.address
    finally:
        handle.stop()


@pytest.fixture
def clickhouse_http_dsn(clickhouse_http) -> str:
    """An `http://` DSN with a database of its own (the server is shared by the session)."""
    import urllib.request
    import uuid

    db = f"t_{uuid.uuid4().hex[:12]}"
    req = urllib.request.Request(clickhouse_http, data=f"CREATE DATABASE {db}".encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
    host = clickhouse_http.removeprefix("http://")
    return f"http://default:@{host}/{db}"


@pytest.fixture
def chdb_path(tmp_path) -> str:
    p = tmp_path / "chdb"
    p.mkdir()
    return str(p)
