"""parser: raw pages into the client's post records, the users seen, and media to store."""

from libs.declaration import ConsumerGroup, ServiceDeclaration
from libs.topics import MEDIA_JOBS, POSTS, RAW_PAGES, USERS

PAGES = ConsumerGroup("parser", (RAW_PAGES,))

DECLARATION = ServiceDeclaration(
    "parser", (PAGES,), outputs=(POSTS, USERS, MEDIA_JOBS), doc=__doc__ or ""
)
