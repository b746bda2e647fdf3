"""Topic administration: the topic catalogue (libs/topics.py) created on a Kafka cluster and
existing topics migrated to it. Used by `xget topics create` in production (replication from
the settings) and by the local launcher (infra/local.py) with the embedded broker's budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from .run_sync import run_sync
from .settings import Settings
from .topics import BUDGET_KEYS, CATALOGUE, TopicSpec, budget_configs, topic_name

log = logging.getLogger(__name__)


def topic_configs(
    spec: TopicSpec,
    default_retention_ms: int | None = None,
    broker_max_mb: int | None = None,
    min_insync_replicas: int | None = None,
) -> dict[str, str]:
    """The configs a catalogue topic is created with. `default_retention_ms` replaces the
    broker's default retention of every topic that is neither compacted nor has its own
    (tests use it to make a broker delete within minutes what Kafka deletes after 7 days).
    `broker_max_mb`: the embedded broker's memory budget, which sets retention.bytes and
    segment sizes (libs.topics.budget_configs); None on any other broker."""
    configs: dict[str, str] = {}
    if spec.compacted:
        configs["cleanup.policy"] = "compact"
    if spec.retention_ms is not None:
        configs["retention.ms"] = str(spec.retention_ms)
    elif default_retention_ms is not None and not spec.compacted:
        configs["retention.ms"] = str(default_retention_ms)
    if broker_max_mb is not None:
        configs.update(budget_configs(spec, broker_max_mb))
    if min_insync_replicas is not None and min_insync_replicas > 1:
        # With acks=all, a write needs this many replicas: a broker down loses nothing.
        configs["min.insync.replicas"] = str(min_insync_replicas)
    return configs


async def create_topics(
    bootstrap: str,
    prefix: str = "",
    catalogue: Iterable[TopicSpec] = CATALOGUE,
    *,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
    default_retention_ms: int | None = None,
    broker_max_mb: int | None = None,
    min_insync_replicas: int | None = None,
    partitions: dict[str, int] | None = None,
) -> dict[str, int]:
    """Create every catalogue topic (`partitions`: counts other than the catalogue's) (existing ones are fine), then verify partition counts.

    Returns ``{topic: partitions}``. Raises RuntimeError when a topic exists with a different
    partition count (partitions are never altered). An existing topic that keeps less than the
    catalogue says is migrated here: to compaction (the upgrade that made task-commands,
    search-jobs and kol-commands compacted: their records stop expiring from the moment this
    runs) or to a longer retention (dead-letters' 30 days)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    specs = list(catalogue)
    counts = partitions or {}
    wanted = {topic_name(s, prefix): counts.get(s.name, s.partitions) for s in specs}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = []
        for s in specs:
            name = topic_name(s, prefix)
            if name in existing:
                continue
            new.append(
                NewTopic(
                    name,
                    wanted[name],
                    replication_factor,
                    topic_configs=topic_configs(
                        s, default_retention_ms, broker_max_mb, min_insync_replicas
                    ),
                )
            )
        if new:
            try:
                resp = await admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
            except TopicAlreadyExistsError:
                resp = None
            for name, code, *rest in getattr(resp, "topic_errors", []) or []:
                if code not in (0, 36):  # 36 = TOPIC_ALREADY_EXISTS (a concurrent creator)
                    raise RuntimeError(f"creating topic {name} failed: error {code} {rest}")
        await _migrate_existing(
            admin,
            [s for s in specs if topic_name(s, prefix) in existing],
            prefix,
            default_retention_ms,
            broker_max_mb,
        )
        # Verify from metadata (retry briefly: metadata may lag creation).
        deadline = time.monotonic() + timeout_s
        while True:
            actual = await _partition_counts(admin, list(wanted))
            missing = [t for t in wanted if t not in actual]
            wrong = {t: (actual[t], n) for t, n in wanted.items() if t in actual and actual[t] != n}
            if wrong:
                raise RuntimeError(
                    "topics with the wrong partition count (actual, expected): "
                    + ", ".join(f"{t}={v}" for t, v in wrong.items())
                )
            if not missing:
                return actual
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics missing after creation: {missing}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def _migrate_existing(
    admin: Any,
    specs: list[TopicSpec],
    prefix: str,
    default_retention_ms: int | None = None,
    broker_max_mb: int | None = None,
) -> None:
    """Bring existing topics up to the catalogue where it keeps more than they do: compaction
    where the catalogue compacts, a longer retention where it sets one. Never shortens a
    retention or stops a compaction (that would delete records) — except the embedded
    broker's budget (`broker_max_mb`), whose byte retention and segment sizes are set as
    derived, whichever way they move."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    wanted = {
        topic_name(s, prefix): topic_configs(s, default_retention_ms, broker_max_mb) for s in specs
    }
    wanted = {n: c for n, c in wanted.items() if c}
    if not wanted:
        return
    res = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n) for n in wanted]
    )
    for r in res:
        for _err, _msg, _type, name, entries in r.resources:
            have = {e[0]: e[1] for e in entries}
            want = wanted.get(name)
            if not have or not want:
                continue  # a broker that reports no configs is left alone
            # The budget's segment sizes as derived; its retention.bytes only where the topic
            # has none: the retention guard owns it from then on (it may have raised it for a
            # lagging group, and it moves it to a changed budget's value once none lags).
            budget_moved = any(
                have.get(k) != want[k]
                for k in BUDGET_KEYS
                if k in want and (k != "retention.bytes" or have.get(k) in (None, "-1"))
            )
            if not (
                _keeps_less(have, want, "cleanup.policy")
                or _keeps_less(have, want, "retention.ms")
                or budget_moved
            ):
                continue
            # AlterConfigs replaces the topic's whole config: the catalogue's settings, and
            # whatever keeps more than they do as it was.
            want = dict(want)
            for key in ("retention.ms", "cleanup.policy"):
                if key in want and key in have and not _keeps_less(have, want, key):
                    want[key] = have[key]
            if have.get("retention.bytes") not in (None, "-1") and "retention.bytes" in want:
                want["retention.bytes"] = have["retention.bytes"]
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, configs=want)]
            )
            log.warning(
                "topic %s migrated to the catalogue's %s (it had %s)",
                name,
                want,
                {k: have.get(k) for k in want},
            )


def _keeps_less(have: dict[str, str], want: dict[str, str], key: str) -> bool:
    """Whether the topic's `key` setting keeps fewer records than the catalogue's."""
    if key not in want or key not in have:
        return False
    if key == "cleanup.policy":
        return "compact" in want[key] and "compact" not in have[key]
    kept, wanted = int(have[key]), int(want[key])  # retention.ms; -1 is forever
    return kept >= 0 and (wanted < 0 or wanted > kept)


async def _partition_counts(admin: Any, topics: list[str]) -> dict[str, int]:
    descs = await admin.describe_topics(topics)
    out: dict[str, int] = {}
    for d in descs:
        if isinstance(d, dict):
            name, err, parts = d.get("topic"), d.get("error_code", 0), d.get("partitions") or []
        else:  # tuple form
            err, name, _internal, parts = d[0], d[1], d[2], d[3]
        if err == 0 and name and parts:
            out[name] = len(parts)
    return out


def create_topics_sync(
    bootstrap: str, prefix: str = "", catalogue: Iterable[TopicSpec] = CATALOGUE, **kw: Any
) -> dict[str, int]:
    """create_topics from synchronous code (a CLI, a launcher) that runs no event loop."""
    specs = list(catalogue)
    return run_sync(lambda: create_topics(bootstrap, prefix, specs, **kw))


def create_from_settings(settings: Settings) -> dict[str, int]:
    """`xget topics create`: the catalogue on the configured cluster, with the replication
    factor, min.insync.replicas and partition counts of the settings (every service must run
    with the same counts: the reporter and the schedule runners work out from them which
    partition owns a task)."""
    return create_topics_sync(
        settings.kafka_bootstrap,
        settings.topic_prefix,
        replication_factor=settings.topic_replication_factor,
        min_insync_replicas=settings.topic_min_insync_replicas,
        partitions=settings.partition_counts(),
    )
