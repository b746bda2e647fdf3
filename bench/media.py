"""Media stored through the service path vs a bare httpx download of the same files.

    PYTHONPATH=. python bench/media.py [--jobs N] [--kb K] [--concurrency C]

Starts a fresh noida-db broker, moto_server (S3) and the X simulator (each JPEG padded to
K KiB, a realistic X image size), and the media-downloader as its own process. Then, in one
run, on the same N distinct media files from the same simulator:

* bare: an httpx.AsyncClient downloads every file with C requests in flight (the service's
  media_concurrency), reading each body fully; measured before and after the service run,
  the better of the two is kept (it is the ceiling, so noise must not lower it).
* service: N MediaJobs are published to media-jobs; timed from the first publish until all N
  MediaStored results are on media-stored — broker → download (type check, hashing, size cap)
  → S3 object (+ one batch index object per partition per batch) → result record,
  acknowledged.

Both count jobs/s and MB/s of media bytes. `BENCH_STORE=file:///DIR` swaps S3 for the
directory store (to see the service without moto's cost). The last line is
`ratio: <service jobs/s ÷ bare jobs/s>` (target ≥ 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import httpx

from infra import local
from infra.service_process import ServiceProcess, wait_until
from libs.kafka import Outgoing, Producer
from libs.records.media import MediaStored
from libs.records.posts import MediaJob
from libs.settings import Settings
from libs.storage.objects import open_object_store
from libs.topic_table import TopicTable
from libs.topics import CATALOGUE, MEDIA_JOBS, MEDIA_STORED
from services.media_downloader.fetch import source_url


async def bare_download(urls: list[str], concurrency: int) -> tuple[float, int]:
    """Seconds to download every URL with `concurrency` in flight, and the bytes read."""
    slots = asyncio.Semaphore(concurrency)
    total = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def one(url: str) -> None:
            nonlocal total
            async with slots:
                rep = await client.get(url)
                rep.raise_for_status()
                total += len(rep.content)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(u) for u in urls))
        return time.perf_counter() - t0, total


async def service_run(
    settings: Settings, jobs: list[MediaJob], timeout: float
) -> tuple[float, list[MediaStored]]:
    """Seconds from the first publish until a result for every job is on media-stored."""
    results: list[MediaStored] = []
    want = {j.post_id for j in jobs}

    def on_result(_key, rec) -> None:
        if isinstance(rec, MediaStored) and rec.post_id in want:
            results.append(rec)

    table = await TopicTable(settings, MEDIA_STORED, on_record=on_result).start()
    producer = await Producer(settings, "bench").start()
    try:
        await table.wait_caught_up()
        t0 = time.perf_counter()
        await producer.send_all([Outgoing(MEDIA_JOBS, j.original_url, j) for j in jobs])
        ok = await table.wait_for(lambda: len(results) >= len(jobs), timeout)
        elapsed = time.perf_counter() - t0
        if not ok:
            raise RuntimeError(f"only {len(results)} of {len(jobs)} results in {timeout}s")
        return elapsed, results
    finally:
        await producer.stop()
        await table.stop()


def s3_floor(settings: Settings, n: int, size: int, concurrency: int) -> float:
    """Seconds moto takes for the object-store requests the service makes for n new URLs
    (one object PUT each; the batch index adds one PUT per partition per batch, left out),
    bare minio from `concurrency` threads."""
    from concurrent.futures import ThreadPoolExecutor

    store = open_object_store(settings)
    body = os.urandom(size)
    tag = uuid.uuid4().hex[:6]

    def one(i: int) -> None:
        store.put_sync(f"floor/{tag}-{i}.jpg", body, "image/jpeg")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as ex:
        list(ex.map(one, range(n)))
    return time.perf_counter() - t0


def jobs_for(tag: str, n: int) -> list[MediaJob]:
    return [
        MediaJob(
            task_id=f"bench-{tag}",
            post_id=f"{tag}-{i}",
            type="image",
            original_url=f"https://pbs.twimg.com/media/bench-{tag}-{i}.jpg",
        )
        for i in range(n)
    ]


def run(n_jobs: int, kb: int, concurrency: int) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="xget-bench-media-"))
    logs = tmp / "logs"
    logs.mkdir()
    handles: list = []
    service: ServiceProcess | None = None
    try:
        broker = local.start_noida(tmp / "noida", log_dir=logs, timeout=60)
        handles.append(broker)
        moto = local.start_moto(log_dir=logs, timeout=60)
        handles.append(moto)
        xsim = local.start_xsim(log_dir=logs, timeout=60)
        handles.append(xsim)
        prefix = f"b{uuid.uuid4().hex[:8]}-"
        local.create_topics_sync(broker.address, prefix, CATALOGUE)
        httpx.post(
            f"{xsim.address}/_sim/config", json={"media_pad_kb": kb}, timeout=10
        ).raise_for_status()
        settings = Settings(
            _env_file=None,
            kafka_bootstrap=broker.address,
            kafka_group_mode="assign",
            kafka_empty_fetch_backoff_ms=50,
            topic_prefix=prefix,
            object_store_url=os.environ.get("BENCH_STORE", "s3://bench-media"),
            s3_endpoint=moto.address,
            s3_access_key="bench",
            s3_secret_key="bench-secret",
            x_media_base=xsim.address,
            x_video_base=xsim.address,
            media_concurrency=concurrency,
            log_level="WARNING",
        )
        service = ServiceProcess("media-downloader", ["media-downloader"], settings, logs).start()

        # Warm up: the service is consuming once a first job has its result.
        warm = jobs_for("warm", 5)
        local.run_sync(lambda: service_run(settings, warm, 60))
        wait_until(service.alive, 1, "the media-downloader process")

        tag = uuid.uuid4().hex[:6]
        jobs = jobs_for(tag, n_jobs)
        urls = [source_url(j.original_url, "image", settings) for j in jobs]

        bare1 = local.run_sync(lambda: bare_download(urls, concurrency))
        svc_s, results = local.run_sync(lambda: service_run(settings, jobs, max(120, n_jobs)))
        bare2 = local.run_sync(lambda: bare_download(urls, concurrency))
        bare_s, bare_bytes = min(bare1, bare2)
        floor_s = (
            s3_floor(settings, n_jobs, bare_bytes // n_jobs, concurrency)
            if settings.object_store_url.startswith("s3://")
            else 0.0
        )

        failed = [r for r in results if r.status != "stored"]
        if failed:
            raise RuntimeError(f"{len(failed)} jobs failed, e.g. {failed[0].cause}")
        svc_bytes = sum(r.bytes or 0 for r in results)
        if svc_bytes != bare_bytes:
            raise RuntimeError(f"stored {svc_bytes} bytes, bare read {bare_bytes}")
        mb = bare_bytes / 1e6
        print(
            f"files: {n_jobs} distinct JPEGs of ~{kb} KiB ({mb:.1f} MB); "
            f"concurrency {concurrency}; simulator, noida-db and moto_server local"
        )
        print(
            f"bare httpx download:  {bare_s:.2f}s = {n_jobs / bare_s:,.1f} files/s, "
            f"{mb / bare_s:,.1f} MB/s (best of before/after: {bare1[0]:.2f}s, {bare2[0]:.2f}s)"
        )
        print(
            f"service path:         {svc_s:.2f}s = {n_jobs / svc_s:,.1f} jobs/s, "
            f"{mb / svc_s:,.1f} MB/s (publish → download → S3 object + batch index → "
            f"media-stored)"
        )
        if floor_s:
            print(
                f"S3 floor (moto):      {floor_s:.2f}s = {n_jobs / floor_s:,.1f} jobs/s for the "
                f"same store requests bare (one object PUT per file)"
            )
            print(
                f"service vs bare download + S3 floor in sequence: {(bare_s + floor_s) / svc_s:.3f}"
            )
        ratio = bare_s / svc_s
        print(f"ratio: {ratio:.3f}")
        return ratio
    finally:
        if service is not None:
            service.stop()
        for h in reversed(handles):
            try:
                h.stop()
            except Exception as e:  # noqa: BLE001 - teardown goes on; the failure is printed
                print(f"stopping {h.name}: {e!r}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("BENCH_MEDIA_JOBS", "1000")))
    ap.add_argument("--kb", type=int, default=128, help="size of each image in KiB")
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args(argv)
    run(args.jobs, args.kb, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
