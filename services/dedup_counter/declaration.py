"""dedup-counter: stores posts and users in ClickHouse, counts unique posts per task, keyword
and month, and publishes each task's progress."""

from libs.declaration import ConsumerGroup, ServiceDeclaration
from libs.topics import POSTS, TASK_PROGRESS, USERS

RECORDS = ConsumerGroup("dedup-counter", (POSTS, USERS))

DECLARATION = ServiceDeclaration(
    "dedup-counter", (RECORDS,), outputs=(TASK_PROGRESS,), doc=__doc__ or ""
)
