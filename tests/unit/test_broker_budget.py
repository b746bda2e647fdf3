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


def test_default_budget_suits_a_24_gb_machine():
    assert Settings().embedded_broker_max_mb == 4096
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


def test_compacted_topics_roll_segments_and_the_kol_cache_is_kept():
    assert budget_configs(TASK_COMMANDS, 4096) == {"segment.ms": str(10 * 60 * 1000)}
    assert budget_configs(KOL_PAGES, 4096) == {}  # the KOL never-pay-twice cache


def test_topic_configs_add_the_budget_only_on_the_embedded_broker():
    assert "retention.bytes" not in topic_configs(RAW_PAGES)
    cfg = topic_configs(RAW_PAGES, broker_max_mb=4096)
    assert cfg["retention.ms"] == str(RAW_PAGES.retention_ms)  # time retention still applies
    assert cfg["retention.bytes"] == budget_configs(RAW_PAGES, 4096)["retention.bytes"]
    assert topic_configs(TASK_COMMANDS, broker_max_mb=4096)["cleanup.policy"] == "compact"


def test_the_guard_raises_retention_while_a_group_lags_and_lowers_it_after():
    from aiokafka import TopicPartition

    from infra.retention_guard import MAX_RAISE, readers, unread_share, wanted_retention
    from libs.lag import Snapshot

    base = 1000
    assert wanted_retention(base, base, 0.1) == base  # reads within the newest quarter
    assert wanted_retention(base, base, 0.5) == 2 * base  # half unread: double
    assert wanted_retention(base, 4 * base, 1.0) == 8 * base  # at most twice per look
    assert wanted_retention(base, 8 * base, 0.01) == base  # caught up: the budget's again
    assert wanted_retention(base, MAX_RAISE * base, 1.0) == MAX_RAISE * base  # no further

    tp0, tp1 = TopicPartition("p-raw-pages", 0), TopicPartition("p-raw-pages", 1)
    snap = Snapshot(
        0.0,
        end={tp0: 100, tp1: 100},
        start={tp0: 0, tp1: 60},
        committed={"p-parser": {tp0: 90, tp1: 70}, "p-never": {tp0: None, tp1: None}},
    )
    # partition 1 keeps 40 records, of which the parser has 30 unread; a group that never
    # committed has no position to protect
    assert unread_share(snap, "p-raw-pages") == 0.75
    assert readers("p-", {"raw-pages"}) == {"p-parser": ["p-raw-pages"]}


def test_the_guard_raises_ahead_only_for_most_unread_and_otherwise_while_deleting(monkeypatch):
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

    def look(start: int, end: int, committed: int) -> dict:
        snap = Snapshot(0.0, {tp: end}, {tp: start}, {"p-parser": {tp: committed}})

        async def snapshot(*_a, **_k):
            return snap

        monkeypatch.setattr(retention_guard.lag, "snapshot", snapshot)
        return asyncio.run(guard.check()).get("raw-pages")

    assert look(0, 600, 100) == 2 * base  # 5/6 unread, nothing deleted yet: raised ahead
    assert look(0, 1000, 500) is None  # half unread, nothing deleted: no raise
    assert look(0, 1000, 500) is None
    assert look(200, 1200, 700) == 4 * base  # half unread while deleting: raised
    assert look(200, 1300, 200) is None  # all unread, not deleting: no further than 4x ahead
    assert look(300, 1400, 200) == 8 * base  # deleting: raised on
