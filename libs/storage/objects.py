"""Object storage for XGet: media and batch files, on an S3 API or in a local directory.

``open_object_store(settings)`` picks the backend from ``settings.object_store_url``:

* ``s3://BUCKET`` → :class:`S3ObjectStore` — the ``minio`` client against
  ``settings.s3_endpoint`` (MinIO in production, ``moto_server`` locally/CI). The bucket is
  created when missing.
* ``file://DIR`` → :class:`FileObjectStore` — plain files under DIR (relative to the cwd when
  relative). Writes are atomic (temp file + ``os.replace``); content type, etag (MD5 hex) and
  user metadata live in a JSON sidecar under ``DIR/.meta/``.

API choice: the protocol is **async** (services run on asyncio). Both backends are sync at
heart (minio is a blocking HTTP client), so each async method runs its sync twin in a thread
(``asyncio.to_thread``); the sync twins (``put_sync``, ``get_sync``, …) are public for CLIs and
tests. ``get`` of a missing key raises :class:`KeyError`; ``stat`` returns ``None``.

Keys are ``/``-separated relative paths (``media/ab/cd/<sha256>.jpg``,
``data/2026/11/23/<task>_batch_001.json``); ``..`` segments and leading ``/`` are rejected.
User metadata keys are lower-case ASCII (S3 normalises them); values are strings.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable
from urllib.parse import quote

from libs.failures import DependencyError, dependency_of

if TYPE_CHECKING:  # pragma: no cover
    from libs.settings import Settings

DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    content_type: str
    etag: str
    metadata: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class ObjectStore(Protocol):
    async def put(
        self,
        key: str,
        data: bytes,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo: ...
    async def put_stream(
        self,
        key: str,
        stream: BinaryIO,
        size: int,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo: ...
    async def get(self, key: str) -> bytes: ...
    def iter_sync(self, key: str, chunk_size: int = 65536) -> Iterator[bytes]: ...
    async def exists(self, key: str) -> bool: ...
    async def stat(self, key: str) -> ObjectInfo | None: ...
    async def list(self, prefix: str = "") -> list[str]: ...
    async def delete(self, keys: Iterable[str]) -> None: ...
    def url(self, key: str) -> str: ...


def check_key(key: str) -> str:
    if not key or key.startswith("/") or "\\" in key:
        raise ValueError(f"invalid object key {key!r}")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object key {key!r}")
    if parts[0] == ".meta" or any(p.startswith(".tmp-") for p in parts):
        raise ValueError(f"reserved object key {key!r}")
    return key


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _norm_meta(metadata: dict[str, str] | None) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (metadata or {}).items()}


class _AsyncFacade:
    """Async methods that run the backend's sync twins in a worker thread. A failure of the
    store itself (down, 5xx, network) comes out as DependencyError("object-store"), so a
    consumer waits it out instead of blaming the record (libs/failures.py)."""

    async def _io(self, fn, *args):
        try:
            return await asyncio.to_thread(fn, *args)
        except Exception as e:
            if dependency_of(e) is not None and not isinstance(e, DependencyError):
                raise DependencyError("object-store", f"{type(e).__name__}: {e}") from e
            raise

    async def put(self, key, data, content_type=DEFAULT_CONTENT_TYPE, metadata=None) -> ObjectInfo:
        return await self._io(self.put_sync, key, data, content_type, metadata)

    async def put_stream(
        self, key, stream, size, content_type=DEFAULT_CONTENT_TYPE, metadata=None
    ) -> ObjectInfo:
        return await self._io(self.put_stream_sync, key, stream, size, content_type, metadata)

    async def get(self, key: str) -> bytes:
        return await self._io(self.get_sync, key)

    async def exists(self, key: str) -> bool:
        return await self._io(self.exists_sync, key)

    async def stat(self, key: str) -> ObjectInfo | None:
        return await self._io(self.stat_sync, key)

    async def list(self, prefix: str = "") -> list[str]:
        return await self._io(self.list_sync, prefix)

    async def delete(self, keys: Iterable[str]) -> None:
        return await self._io(self.delete_sync, list(keys))

    def exists_sync(self, key: str) -> bool:
        return self.stat_sync(key) is not None

    def put_sync(
        self,
        key,
        data: bytes,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        data = bytes(data)
        return self.put_stream_sync(key, io.BytesIO(data), len(data), content_type, metadata)


# ---------------------------------------------------------------------------------------------
class FileObjectStore(_AsyncFacade):
    def __init__(self, directory: str | os.PathLike) -> None:
        self.root = Path(directory).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._meta_root = self.root / ".meta"

    def __repr__(self) -> str:
        return f"FileObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _meta_path(self, key: str) -> Path:
        return self._meta_root / (check_key(key) + ".json")

    @staticmethod
    def _write_temp(directory: Path, chunks: Iterable[bytes]) -> str:
        """Write chunks to a synced temp file in `directory`; returns its path."""
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return tmp

    @staticmethod
    def _replace(tmp: str, path: Path) -> None:
        try:
            os.replace(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def _atomic_write(self, path: Path, data: bytes) -> None:
        self._replace(self._write_temp(path.parent, (data,)), path)

    def put_stream_sync(
        self,
        key,
        stream: BinaryIO,
        size: int,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Store `size` bytes read from `stream` without holding them in memory."""
        path = self._path(key)
        md5 = hashlib.md5()

        def chunks():
            left = size
            while left > 0:
                chunk = stream.read(min(left, 1 << 20))
                if not chunk:
                    raise ValueError(f"stream for {key!r} ended {left} bytes short of {size}")
                md5.update(chunk)
                left -= len(chunk)
                yield chunk

        tmp = self._write_temp(path.parent, chunks())
        info = ObjectInfo(
            key=key,
            size=size,
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            etag=md5.hexdigest(),
            metadata=_norm_meta(metadata),
        )
        try:
            # Sidecar first: whenever the data file is visible its metadata is already there.
            self._atomic_write(
                self._meta_path(key),
                json.dumps(
                    {
                        "size": info.size,
                        "content_type": info.content_type,
                        "etag": info.etag,
                        "metadata": info.metadata,
                    }
                ).encode(),
            )
        except BaseException:
            _unlink_quietly(tmp)
            raise
        self._replace(tmp, path)
        return info

    def get_sync(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def iter_sync(self, key: str, chunk_size: int = 65536) -> Iterator[bytes]:
        """The object's bytes in chunks, never all in memory (KeyError when absent, raised
        by the first next())."""
        try:
            f = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None
        with f:
            while chunk := f.read(chunk_size):
                yield chunk

    def exists_sync(self, key: str) -> bool:
        return self._path(key).is_file()

    def stat_sync(self, key: str) -> ObjectInfo | None:
        p = self._path(key)
        if not p.is_file():
            return None
        try:
            meta = json.loads(self._meta_path(key).read_text())
        except (FileNotFoundError, ValueError):
            data = p.read_bytes()
            meta = {
                "content_type": DEFAULT_CONTENT_TYPE,
                "etag": hashlib.md5(data).hexdigest(),
                "metadata": {},
            }
        return ObjectInfo(
            key=key,
            size=p.stat().st_size,
            content_type=meta["content_type"],
            etag=meta["etag"],
            metadata=dict(meta.get("metadata") or {}),
        )

    def list_sync(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d != ".meta"]
                rel_dir = ""
            for fn in filenames:
                if fn.startswith(".tmp-"):
                    continue
                key = f"{rel_dir}/{fn}" if rel_dir else fn
                key = key.replace(os.sep, "/")
                if key.startswith(prefix):
                    out.append(key)
        return sorted(out)

    def delete_sync(self, keys: Iterable[str]) -> None:
        for key in keys:
            _unlink_quietly(str(self._path(key)))
            _unlink_quietly(str(self._meta_path(key)))

    def url(self, key: str) -> str:
        return self._path(key).as_uri()


# ---------------------------------------------------------------------------------------------
class S3ObjectStore(_AsyncFacade):
    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str | None = "us-east-1",
        create_bucket: bool = True,
        pool_size: int = 10,
    ) -> None:
        """`pool_size`: connections kept open; at least the threads calling the store at once,
        else every call past it opens a new connection (minio's pool keeps 10)."""
        import certifi
        import urllib3
        from minio import Minio

        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        timeout = 300  # minio's own defaults, but for the pool size
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            maxsize=pool_size,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        self.client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )
        if create_bucket and not self.client.bucket_exists(bucket):
            from minio.error import S3Error

            try:
                self.client.make_bucket(bucket, location=region)
            except S3Error as exc:  # created concurrently by another replica
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.endpoint!r}, bucket={self.bucket!r})"

    def put_stream_sync(
        self,
        key,
        stream: BinaryIO,
        size: int,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Store `size` bytes read from `stream` (multipart above minio's part size)."""
        meta = _norm_meta(metadata)
        res = self.client.put_object(
            self.bucket,
            check_key(key),
            stream,
            size,
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            metadata=meta or None,
        )
        return ObjectInfo(
            key=key,
            size=size,
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            etag=(res.etag or "").strip('"'),
            metadata=meta,
        )

    def get_sync(self, key: str) -> bytes:
        from minio.error import S3Error

        try:
            resp = self.client.get_object(self.bucket, check_key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                raise KeyError(key) from None
            raise
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def iter_sync(self, key: str, chunk_size: int = 65536) -> Iterator[bytes]:
        """The object's bytes in chunks, never all in memory (KeyError when absent, raised
        by the first next())."""
        from minio.error import S3Error

        try:
            resp = self.client.get_object(self.bucket, check_key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                raise KeyError(key) from None
            raise
        try:
            yield from resp.stream(chunk_size)
        finally:
            resp.close()
            resp.release_conn()

    def stat_sync(self, key: str) -> ObjectInfo | None:
        from minio.error import S3Error

        try:
            st = self.client.stat_object(self.bucket, check_key(key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound", "NotFound"):
                return None
            raise
        meta: dict[str, str] = {}
        for k, v in (st.metadata or {}).items():
            lk = k.lower()
            if lk.startswith("x-amz-meta-"):
                meta[lk[len("x-amz-meta-") :]] = v
        return ObjectInfo(
            key=key,
            size=int(st.size or 0),
            content_type=st.content_type or DEFAULT_CONTENT_TYPE,
            etag=(st.etag or "").strip('"'),
            metadata=meta,
        )

    def list_sync(self, prefix: str = "") -> list[str]:
        return sorted(
            o.object_name
            for o in self.client.list_objects(self.bucket, prefix=prefix or None, recursive=True)
            if not o.is_dir
        )

    def delete_sync(self, keys: Iterable[str]) -> None:
        """Delete keys (missing ones are fine), up to 1,000 per request."""
        from minio.deleteobjects import DeleteObject

        keys = [check_key(k) for k in keys]
        for i in range(0, len(keys), 1000):
            errors = list(
                self.client.remove_objects(
                    self.bucket, [DeleteObject(k) for k in keys[i : i + 1000]]
                )
            )
            if errors:
                raise OSError(f"delete failed for {len(errors)} keys, e.g. {errors[0]}")

    def url(self, key: str) -> str:
        """Path-style URL of the object (readable as-is only from a public bucket)."""
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.endpoint}/{self.bucket}/{quote(check_key(key))}"

    def presigned_url(self, key: str, expires_s: int = 7 * 24 * 3600) -> str:
        from datetime import timedelta

        return self.client.presigned_get_object(
            self.bucket, check_key(key), expires=timedelta(seconds=expires_s)
        )


# ---------------------------------------------------------------------------------------------
def open_object_store(
    settings: Settings, *, pool_size: int = 10
) -> FileObjectStore | S3ObjectStore:
    """`pool_size`: S3 connections kept open (see S3ObjectStore)."""
    url = settings.object_store_url
    if url.startswith("file://"):
        return FileObjectStore(url[len("file://") :])
    if url.startswith("s3://"):
        bucket = url[len("s3://") :].strip("/")
        if not bucket or "/" in bucket:
            raise ValueError(f"object_store_url {url!r}: expected s3://BUCKET")
        return S3ObjectStore(
            settings.s3_endpoint,
            settings.s3_access_key.get_secret_value(),
            settings.s3_secret_key.get_secret_value(),
            bucket,
            secure=settings.s3_secure,
            region=settings.s3_region,
            pool_size=pool_size,
        )
    raise ValueError(f"unsupported object_store_url {url!r} (use s3://BUCKET or file://DIR)")
