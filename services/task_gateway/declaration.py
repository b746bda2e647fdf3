"""task-gateway: the HTTP API, the scheduler that turns task commands into search jobs, the
rejections that show a command dead-lettered as a rejected task, and the alerts evaluator."""

from libs.declaration import ConsumerGroup, ServiceDeclaration
from libs.topics import (
    ACCOUNT_STATE,
    CONSOLE_AUDIT,
    CONSOLE_USERS,
    DEAD_LETTERS,
    KOL_COMMANDS,
    KOL_PROGRESS,
    PROXY_STATE,
    REPORT_CONTROLS,
    SCHEDULE_STATE,
    SEARCH_JOBS,
    TASK_ACCOUNT_WAITS,
    TASK_COMMANDS,
    TASK_CONTROLS,
    TASK_PROGRESS,
)

SCHEDULER = ConsumerGroup("scheduler", (TASK_COMMANDS,))
REJECTIONS = ConsumerGroup("task-rejections", (DEAD_LETTERS,))

DECLARATION = ServiceDeclaration(
    "task-gateway",
    (SCHEDULER, REJECTIONS),
    outputs=(
        TASK_COMMANDS,
        SEARCH_JOBS,
        TASK_CONTROLS,
        SCHEDULE_STATE,
        KOL_COMMANDS,
        REPORT_CONTROLS,
        CONSOLE_USERS,  # console users and roles (compacted)
        CONSOLE_AUDIT,  # every state-changing action
    ),
    reads=(
        TASK_COMMANDS,
        TASK_PROGRESS,
        TASK_CONTROLS,
        TASK_ACCOUNT_WAITS,
        ACCOUNT_STATE,
        PROXY_STATE,  # the alerts evaluator judges the proxy pool too
        CONSOLE_USERS,
        SCHEDULE_STATE,
        KOL_COMMANDS,
        KOL_PROGRESS,
    ),
    http_port=8080,
    doc=__doc__ or "",
)
