"""reporter: batches of a task's stored posts to the client's webhook, and the media results
recorded for them."""

from libs.declaration import ConsumerGroup, ServiceDeclaration
from libs.topics import MEDIA_STORED, REPORT_CONTROLS, TASK_COMMANDS, TASK_PROGRESS

TASKS = ConsumerGroup("reporter", (TASK_COMMANDS, TASK_PROGRESS, REPORT_CONTROLS))
MEDIA = ConsumerGroup("reporter-media", (MEDIA_STORED,))

DECLARATION = ServiceDeclaration(
    "reporter",
    (TASKS, MEDIA),
    # A report that cannot be delivered goes to dead letters (ServiceDeclaration.writes);
    # `xget reports replay` hands it back on REPORT_CONTROLS.
    outputs=(REPORT_CONTROLS,),
    doc=__doc__ or "",
)
