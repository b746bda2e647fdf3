"""The scheduler's slicing: a window becomes one search job per UTC day it touches."""

from datetime import UTC, datetime

from libs.records.tasks import OnDemandTask
from services.task_gateway.scheduler import day_slices, jobs_for


def utc(*a):
    return datetime(*a, tzinfo=UTC)


def test_window_is_cut_at_utc_midnights_without_gaps():
    s = day_slices(utc(2026, 10, 1, 6), utc(2026, 10, 4, 3))
    assert s == [
        (utc(2026, 10, 1, 6), utc(2026, 10, 2)),
        (utc(2026, 10, 2), utc(2026, 10, 3)),
        (utc(2026, 10, 3), utc(2026, 10, 4)),
        (utc(2026, 10, 4), utc(2026, 10, 4, 3)),
    ]
    assert day_slices(utc(2026, 10, 1), utc(2026, 10, 2)) == [(utc(2026, 10, 1), utc(2026, 10, 2))]
    assert day_slices(utc(2026, 10, 1, 1), utc(2026, 10, 1, 2)) == [
        (utc(2026, 10, 1, 1), utc(2026, 10, 1, 2))
    ]


def test_jobs_are_stable_and_carry_the_slice_window():
    task = OnDemandTask(
        task_id="t1",
        keyword="tesla",
        required_count=700,
        start_time=utc(2026, 10, 1),
        end_time=utc(2026, 10, 31),
        submitted_at=utc(2026, 11, 1),
    )
    jobs = jobs_for(task)
    assert len(jobs) == 30 and {j.slice_count for j in jobs} == {30}
    assert jobs == jobs_for(task)  # replaying the command gives the same slices
    assert len({j.slice_id for j in jobs}) == 30
    assert jobs[0].query == "tesla since:2026-10-01_00:00:00_UTC until:2026-10-02_00:00:00_UTC"
    assert all(j.required_count == 700 for j in jobs)
