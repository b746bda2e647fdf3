"""The media-downloader's result for one media job: where the bytes landed, or why not."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Record
from .posts import MediaType

MediaStatus = Literal["stored", "failed"]


class MediaStored(Record):
    """One result per MediaJob: the stored object (image, GIF thumbnail or video cover, and the
    video itself when the task asked for it) or the cause of a permanent failure."""

    schema_name = "xget.MediaStored"

    task_id: str
    post_id: str
    original_url: str = Field(description="The media URL on X, as in the post's media array.")
    type: MediaType
    of_original: bool = Field(False, description="Belongs to the retweeted/quoted original.")
    status: MediaStatus = Field(description="stored, or failed with the cause.")
    cause: str | None = Field(
        None,
        description="Why it failed, e.g. 'http 404', 'too large: N > CAP bytes', "
        "'not an image: text/html'.",
    )
    object_key: str | None = Field(None, description="media/<sha256[:2]>/<sha256>.<ext>")
    oss_url: str | None = Field(None, description="The object's URL in the object store.")
    content_type: str | None = Field(None, description="From the bytes' magic, e.g. image/jpeg.")
    bytes: int | None = Field(None, description="Size of the stored object.")
    width: int | None = Field(None, description="From the image header.")
    height: int | None = Field(None, description="From the image header.")
    sha256: str | None = Field(None, description="Hex SHA-256 of the stored bytes.")
    video_url: str | None = Field(None, description="Best video variant; set only when asked.")
    video_object_key: str | None = None
    video_oss_url: str | None = None
    video_bytes: int | None = None
    video_status: MediaStatus | None = Field(None, description="None when no video was asked.")
    video_cause: str | None = None
