"""media-downloader: each image and video cover into the object store, once per URL."""

from libs.declaration import ConsumerGroup, ServiceDeclaration
from libs.topics import MEDIA_JOBS, MEDIA_STORED

JOBS = ConsumerGroup("media-downloader", (MEDIA_JOBS,))

DECLARATION = ServiceDeclaration(
    "media-downloader", (JOBS,), outputs=(MEDIA_STORED,), doc=__doc__ or ""
)
