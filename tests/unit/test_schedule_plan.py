"""Re-planning a scheduled task's runs after a frequency change: runs already fired keep their
times, the next run's window starts where the last fired one ended, and spacing follows the
new frequency."""

from datetime import UTC, datetime, timedelta

from libs.records.tasks import ScheduledTask, ScheduleState
from services.task_gateway.schedules import Plan, run_task

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def task(**kw) -> ScheduledTask:
    return ScheduledTask(
        task_id="s1", keyword="k", frequency="hourly", frequency_count=4, submitted_at=T0, **kw
    )


def test_original_plan_is_the_submission_schedule():
    p = Plan.of(task())
    assert [p.fire_time(n) for n in range(3)] == [T0 + timedelta(minutes=15 * n) for n in range(3)]
    assert p.due_runs(T0 - timedelta(seconds=1)) == 0
    assert p.due_runs(T0) == 1 and p.due_runs(T0 + timedelta(minutes=44)) == 3


def test_replan_anchors_on_the_last_fired_run_and_keeps_windows_contiguous():
    t = task()
    old = Plan.of(t)
    new = old.replanned("hourly", 2, last_run=1)  # after runs 0 and 1 (at :00 and :15)
    assert new.fire_time(1) == old.fire_time(1) == T0 + timedelta(minutes=15)
    assert new.fire_time(2) == T0 + timedelta(minutes=45)
    assert new.fire_time(3) == T0 + timedelta(minutes=75)
    # due counts: nothing new before :45, run 2 at :45, run 3 at 1:15
    assert new.due_runs(T0 + timedelta(minutes=44)) == 2
    assert new.due_runs(T0 + timedelta(minutes=45)) == 3
    assert new.due_runs(T0 + timedelta(minutes=75)) == 4
    r1, r2 = run_task(t, 1, plan=old), run_task(t, 2, plan=new)
    assert r1.end_time == r2.start_time and r2.end_time - r2.start_time == timedelta(minutes=30)
    # the stored state gives the same plan back (a restart keeps it)
    st = ScheduleState(
        task_id="s1",
        last_run=1,
        updated_at=T0,
        frequency="hourly",
        frequency_count=2,
        base_run=new.base_run,
        base_time=new.base_time,
    )
    assert Plan.of(t, st) == new


def test_replan_before_any_run_uses_the_submission_as_anchor():
    new = Plan.of(task()).replanned("daily", 1, last_run=-1)
    assert new.fire_time(0) == T0 and new.fire_time(1) == T0 + timedelta(days=1)
