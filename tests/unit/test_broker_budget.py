"""The embedded broker's retention comes from its memory budget (XGET_EMBEDDED_BROKER_MAX_MB)."""

from __future__ import annotations

from infra.local import topic_configs
from libs.settings import Settings
from libs.topics import (
    BUDGET_SHARES,
    CATALOGUE,
    KOL_PAGES,
    RAW_PAGES,
    SEGMENTS_PER_RETENTION,
    TASK_COMMANDS,
    budget_configs,
    retained_bytes_budget,
)


def kept_at_most(max_mb: int) -> int:
    """Bytes every budgeted partition together can hold: retention.bytes plus the segment
    being filled (retention deletes whole segments)."""
    total = 0
    for spec in CATALOGUE:
        cfg = budget_configs(spec, max_mb)
        if "retention.bytes" in cfg:
            per = int(cfg["retention.bytes"]) + int(cfg["segment.bytes"])
            total += per * spec.partitions
    return total


def test_default_budget_levels_off_early_in_a_large_task():
    assert Settings(_env_file=None).embedded_broker_max_mb == 1024
    assert abs(sum(BUDGET_SHARES.values()) - 1.0) < 1e-9


def test_retention_bytes_scale_with_the_budget_and_stay_within_it():
    for max_mb in (512, 1024, 4096, 16384):
        assert kept_at_most(max_mb) <= retained_bytes_budget(max_mb) * 1.001
        assert retained_bytes_budget(max_mb) < max_mb * 2**20
    small = int(budget_configs(RAW_PAGES, 1024)["retention.bytes"])
    large = int(budget_configs(RAW_PAGES, 4096)["retention.bytes"])
    assert 3.5 < large / small < 4.5


def test_segments_are_a_fraction_of_retention_so_retention_can_delete():
    # noida-db (like Kafka) deletes whole segments; its default segment is 1 GiB, which would
    # make any smaller retention.bytes delete nothing.
    cfg = budget_configs(RAW_PAGES, 4096)
    assert int(cfg["segment.bytes"]) * SEGMENTS_PER_RETENTION == int(cfg["retention.bytes"])
    assert int(cfg["segment.bytes"]) < 1 << 30


def test_every_delete_policy_topic_but_the_kol_cache_has_a_share():
    # A topic without one keeps whatever its time retention says: service-logs is written all
    # the time (7 days of it would be GBs in the broker's memory), console-audit for 400 days.
    for spec in CATALOGUE:
        if not spec.compacted and spec is not KOL_PAGES:
            assert spec.name in BUDGET_SHARES, spec.name


def test_compacted_topics_roll_segments_and_the_kol_cache_is_kept():
    assert budget_configs(TASK_COMMANDS, 4096) == {"segment.ms": str(60 * 1000)}
    assert budget_configs(KOL_PAGES, 4096) == {}  # the KOL never-pay-twice cache


def test_topic_configs_add_the_budget_only_on_the_embedded_broker():
    assert "retention.bytes" not in topic_configs(RAW_PAGES)
    cfg = topic_configs(RAW_PAGES, broker_max_mb=4096)
    assert cfg["retention.ms"] == str(RAW_PAGES.retention_ms)  # time retention still applies
    assert cfg["retention.bytes"] == budget_configs(RAW_PAGES, 4096)["retention.bytes"]
    assert topic_configs(TASK_COMMANDS, broker_max_mb=4096)["cleanup.policy"] == "compact"


def test_the_guard_keeps_every_group_within_half_the_retention_in_bytes():
    from aiokafka import TopicPartition

    from infra.retention_guard import MAX_RAISE, readers, unread_bytes, wanted_retention
    from libs.lag import Snapshot

    base = 1000
    assert wanted_retention(base, 400) == base  # within half: the budget's
    assert wanted_retention(base, 600) == 2 * base  # more than half unread: doubled
    assert wanted_retention(base, 3900) == 8 * base  # the smallest power of two that holds it
    assert wanted_retention(base, 600, 0.4) == 2 * base  # (lowering keeps 40%)
    assert wanted_retention(base, 10**12) == MAX_RAISE * base  # no further

    tp0, tp1 = TopicPartition("p-raw-pages", 0), TopicPartition("p-raw-pages", 1)
    snap = Snapshot(
        0.0,
        end={tp0: 100, tp1: 100},
        start={tp0: 0, tp1: 60},
        committed={"p-parser": {tp0: 90, tp1: 70}, "p-never": {tp0: None, tp1: None}},
    )
    held = {tp0: 100_000, tp1: 80_000}  # 1,000 and 2,000 bytes a record
    # partition 1 keeps 40 records of 2,000 bytes, of which the parser has 30 unread; a group
    # that never committed has no position to protect
    assert unread_bytes(snap, held, "p-raw-pages") == 60_000
    assert readers("p-", {"raw-pages"}) == {"p-parser": ["p-raw-pages"]}
    # a partition the parser never committed on while it committed on another: it reads it
    # from its first record, so all 40 records held there (80,000 bytes) are unread
    snap.committed["p-parser"][tp1] = None
    assert unread_bytes(snap, held, "p-raw-pages") == 80_000


def test_the_guard_raises_at_once_and_lowers_after_thirty_seconds_within_a_quarter(monkeypatch):
    import asyncio

    from aiokafka import TopicPartition

    from infra import retention_guard
    from libs.lag import Snapshot

    guard = retention_guard.RetentionGuard(Settings(_env_file=None, topic_prefix="p-"), 512)
    base = guard.topics["raw-pages"][1]
    guard.current = {name: b for name, (_spec, b) in guard.topics.items()}
    applied: list[dict] = []

    async def apply(changes):
        applied.append(changes)
        guard.current.update(changes)

    guard._apply = apply
    tp = TopicPartition("p-raw-pages", 0)

    def look(kept_bytes: int, unread_bytes: int) -> int | None:
        # 1,000 records kept, of `kept_bytes` together; the parser has read all but a share
        unread = round(1000 * unread_bytes / kept_bytes)
        snap = Snapshot(0.0, {tp: 2000}, {tp: 1000}, {"p-parser": {tp: 2000 - unread}})

        async def snapshot(*_a, **_k):
            return snap

        async def partition_bytes(*_a, **_k):
            return {tp: kept_bytes}

        monkeypatch.setattr(retention_guard.lag, "snapshot", snapshot)
        monkeypatch.setattr(retention_guard.log_dirs, "partition_bytes", partition_bytes)
        return asyncio.run(guard.check()).get("raw-pages")

    assert look(base, base // 3) is None  # a third of the retention unread: nothing to do
    assert look(base, base * 3 // 4) == 2 * base  # three quarters: raised at once
    assert look(3 * base, 3 * base) == 8 * base  # the group read nothing: raised to hold it
    for _ in range(retention_guard.SETTLE_LOOKS - 1):
        assert look(base, base // 10) is None  # caught up: lowered only after 30 s ...
    assert look(base, base // 10) == base  # ... to the budget's
    for _ in range(retention_guard.SETTLE_LOOKS + 2):
        assert look(base, base // 3) is None  # within half of the budget's: stays there
    # A parser the scraper's gate holds at a quarter (and a bit) of the retention lets a
    # raise go back down: the gate keeps it there, the budget's is enough.
    assert look(base, base * 3 // 4) == 2 * base
    for _ in range(retention_guard.SETTLE_LOOKS - 1):
        assert look(base, base * 3 // 10) is None
    assert look(base, base * 3 // 10) == base
