"""What the reporter sends to the client's webhook, and the commands that steer it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from .base import Record


class WebhookReport(Record):
    """One batch report, exactly the body POSTed to the client's webhook."""

    schema_name = "xget.WebhookReport"

    post_id: str = Field(
        "",
        description="The design's single post id: the batch's first post (post_ids[0]); for a "
        "batch without posts, the retweeted post of a retweeters task, else the last post the "
        "task reported before, else ''.",
    )
    task_id: str
    keyword: str
    post_ids: list[str] = Field(description="Posts in this batch (new unique posts of the task).")
    oss_file_path: str = Field(
        description="Batch file in the bucket: data/YYYY/MM/DD/{task}_batch_{NNN}.json"
    )
    batch_id: str = Field(description="'{task_id}_batch_{NNN}'; also the Idempotency-Key header.")
    batch_size: int = Field(ge=0)
    total_collected: int = Field(
        ge=0, description="Posts reported for the task so far, this batch included."
    )
    completion_status: Literal["partial", "completed"]
    user_ids: list[str] = Field(
        default_factory=list,
        description="Users in this batch, for user tasks (user_profile, retweeters; post_ids "
        "is then empty). batch_size and total_collected count them.",
    )


class ReportsResume(Record):
    """The client asks for the next batches of a task it paused with next_batch_allowed=false."""

    schema_name = "xget.ReportsResume"

    task_id: str
    requested_at: datetime


class ReportsReplay(Record):
    """Deliver again a report that went to the dead-letter topic (`xget reports replay`)."""

    schema_name = "xget.ReportsReplay"

    task_id: str
    batch_no: int = Field(ge=1)
    requested_at: datetime
