"""Slices parked by a scraper replica: waiting for an account of their X operation (the
account-manager answered that none can serve now) or paused by the client.

A parked slice holds no scraper slot: the replica takes other jobs meanwhile, so work of an
operation with budget runs at once instead of queueing behind a shortage it has no part in.
Parking is durable without a record of its own: the job's offset stays uncommitted and the
page ledger holds the slice's cursor, so after a restart the job is delivered again, resumes
at its page and parks again until an account frees up.
"""

from __future__ import annotations

from libs.records.tasks import SearchJob


class Parking:
    def __init__(self) -> None:
        self.slices: dict[str, str] = {}  # task_id/slice_id -> why it is parked

    def __len__(self) -> int:
        return len(self.slices)

    def park(self, job: SearchJob, why: str) -> None:
        self.slices[f"{job.task_id}/{job.slice_id}"] = why

    def unpark(self, job: SearchJob) -> None:
        self.slices.pop(f"{job.task_id}/{job.slice_id}", None)
