"""Storage adapters: ClickHouse (embedded chdb or a server) and object storage (S3 or files)."""

from .clickhouse import ClickHouseStore
from .objects import (
    FileObjectStore,
    ObjectInfo,
    ObjectStore,
    S3ObjectStore,
    open_object_store,
)

__all__ = [
    "ClickHouseStore",
    "FileObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "S3ObjectStore",
    "open_object_store",
]
