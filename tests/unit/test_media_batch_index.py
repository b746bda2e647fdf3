"""Batch index keys: a partition's index objects list in offset order and name their range."""

from aiokafka import TopicPartition

from services.media_downloader.batch_index import batch_key, offsets_of, partition_prefix


def test_keys_sort_by_offset_and_carry_their_range():
    tp = TopicPartition("x-media-jobs", 3)
    keys = [batch_key(tp, first, last) for first, last in ((9, 10), (11, 1_000), (1_001, 1_001))]
    assert sorted(keys) == keys  # zero-padded: listing order is offset order
    assert all(k.startswith(partition_prefix(tp)) for k in keys)
    assert partition_prefix(tp) == "media-index/x-media-jobs/0003/"
    assert [offsets_of(k) for k in keys] == [(9, 10), (11, 1_000), (1_001, 1_001)]


def test_other_keys_under_the_prefix_are_not_index_objects():
    assert offsets_of("media-index/x-media-jobs/0003/notes.json") is None
    assert offsets_of("media-index/x-media-jobs/0003/1-2.json") is None
