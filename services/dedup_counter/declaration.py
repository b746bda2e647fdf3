"""dedup-counter: stores posts and users in ClickHouse, counts unique posts per task, keyword
and month, and publishes each task's progress; its usage meter stores every X request made
for a task (account-events), a task's actual cost."""

from libs.declaration import ConsumerGroup, ServiceDeclaration
from libs.topics import ACCOUNT_EVENTS, POSTS, TASK_PROGRESS, USERS

RECORDS = ConsumerGroup("dedup-counter", (POSTS, USERS))
USAGE = ConsumerGroup("usage-meter", (ACCOUNT_EVENTS,))

DECLARATION = ServiceDeclaration(
    "dedup-counter", (RECORDS, USAGE), outputs=(TASK_PROGRESS,), doc=__doc__ or ""
)
