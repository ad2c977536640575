"""Chunked per-image work: in this process, on a local Dask cluster or on a Dask scheduler, with or without Prefect.

A stage describes its work as an :class:`ImageJob` — cheap fields (paths, params) pickled to the workers, whose
:meth:`~ImageJob.load` (the model, the open stores) runs once per worker process — and hands the image ids to
:func:`run_images`. Each worker writes its images atomically into the stage's work directory and skips those
already there, so a chunk retried after its worker died loses no finished image and computes none twice; the
caller publishes the store only once every image is present. An image that fails for a reason of its own (a
``ValueError`` or ``OSError``: corrupt or missing input) does not stop its chunk: the stage fails after every
other chunk finished, naming each such file. Any other error fails the chunk, which is retried.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.execution.params import ExecutionParams
from pipeline.io import inside, write_label_png
from pipeline.tracking import ProgressBar, debug, forward_warnings, in_prefect_run

Chunks = list[list[str]]  # image ids, chunk by chunk
JOURNAL_PREFIX = ".computed-"  # dot names are never published (pipeline.io.pack_zip)


class ImageJob(ABC):
    """Work on images by id for one stage; pickled to each worker with every chunk, so keep fields small."""

    uses_gpu: bool = False  # asks for one ``GPU`` resource on clusters whose workers advertise it

    def __init__(self, key: str, work: Path) -> None:
        self.key = key  # identity of the inputs: loaded state is reused by chunks of the same key
        self.work = Path(work)

    @abstractmethod
    def load(self) -> None:
        """Open what computing needs (model, stores); runs once per worker process and key."""

    @abstractmethod
    def done(self, image_id: str) -> bool:
        """Whether the image's output is already in the work directory (works without :meth:`load`)."""

    @abstractmethod
    def compute(self, image_id: str) -> None:
        """Compute one image and write it atomically into the work directory."""

    def groups(self, image_ids: list[str]) -> list[list[str]]:
        """The images computed together, as one batch (by default each alone); runs on the loaded job."""
        return [[image_id] for image_id in image_ids]

    def compute_group(self, image_ids: list[str]) -> None:
        """Compute one of :meth:`groups` and write each of its images atomically."""
        for image_id in image_ids:
            self.compute(image_id)


class LabelJob(ImageJob):
    """An :class:`ImageJob` whose output per image is a label PNG, ``<work>/<image id>.png``."""

    def done(self, image_id: str) -> bool:
        return inside(self.work, f"{image_id}.png").exists()

    def write_label(self, image_id: str, label: np.ndarray) -> None:
        write_label_png(inside(self.work, f"{image_id}.png"), np.asarray(label, dtype=np.uint8))


@dataclass
class ChunkResult:
    """What one chunk did: images computed, images it found done (by a killed attempt), per-image failures."""

    computed: int = 0
    already_done: int = 0
    failures: list[str] = field(default_factory=list)
    worker: str = "in-process"
    seconds: float = 0.0


_loaded: dict[str, ImageJob] = {}
_load_lock = threading.Lock()


def _loaded_job(job: ImageJob) -> ImageJob:
    """The worker process's loaded copy of ``job`` (one job at a time: a model per worker)."""
    with _load_lock:
        if job.key not in _loaded:
            _loaded.clear()
            job.load()
            _loaded[job.key] = job
        return _loaded[job.key]


def worker_name() -> str:
    """The Dask worker's address, or ``in-process``."""
    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            return get_worker().address
        except ValueError:
            pass
    return "in-process"


def compute_chunk(job: ImageJob, image_ids: list[str]) -> ChunkResult:
    """Compute the images of one chunk that are not yet done; runs on a worker (or in this process), a chunk
    task's warnings going to its Prefect log."""
    with forward_warnings():
        return _compute_chunk(job, image_ids)


def _compute_chunk(job: ImageJob, image_ids: list[str]) -> ChunkResult:
    start = time.perf_counter()
    result = ChunkResult(worker=worker_name())
    loaded = _loaded_job(job)
    journal = job.work / f"{JOURNAL_PREFIX}{socket.gethostname()}-{os.getpid()}"
    pending = [image_id for image_id in image_ids if not loaded.done(image_id)]  # else finished by a dead attempt
    result.already_done = len(image_ids) - len(pending)
    for group in loaded.groups(pending):
        _compute_group(loaded, group, result, journal)
    result.seconds = round(time.perf_counter() - start, 3)
    debug(f"{len(image_ids)} images on {result.worker}: {result.computed} computed, {result.already_done} already "
          f"done, {len(result.failures)} failed, {result.seconds:.1f} s")  # fmt: skip
    return result


def _compute_group(job: ImageJob, group: list[str], result: ChunkResult, journal: Path) -> None:
    """Compute one group of images; an image's own problem (``ValueError``, ``OSError``: retrying would not help)
    is recorded, and a group it breaks is computed again image by image, so the failure names its image."""
    try:
        job.compute_group(group)
    except (ValueError, OSError) as error:
        if len(group) == 1:
            result.failures.append(str(error))
            return
        for image_id in group:
            if not job.done(image_id):
                _compute_group(job, [image_id], result, journal)
        return
    with journal.open("a") as handle:
        handle.writelines(f"{image_id}\n" for image_id in group)
    result.computed += len(group)


def chunked(ids: list[str], size: int) -> Chunks:
    return [ids[start : start + size] for start in range(0, len(ids), size)]


def run_images(stage: str, job: ImageJob, ids: list[str], execution: ExecutionParams) -> dict[str, int]:
    """Compute every image of ``ids`` not yet in ``job.work``, chunk by chunk on ``execution.runner``.

    Returns the counts: ``images``, ``computed`` (by this run's chunks), ``resumed`` (done before this run),
    ``recovered`` (finished by a chunk attempt whose worker died, found done by its retry) and ``recomputed``
    (images written more than once by any run of this work directory; the done-check keeps it at 0). Raises
    ValueError naming every image that failed.
    """
    job.work.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    if execution.runner == "local" and execution.workers > cores:
        warnings.warn(f"{stage}: execution.workers is {execution.workers} on a machine with {cores} cores: the "
                      "local workers will compete for the CPU", stacklevel=2)  # fmt: skip
    todo = [image_id for image_id in ids if not job.done(image_id)]
    chunks = chunked(todo, execution.chunk_size)
    bar = ProgressBar(total=len(todo), desc=stage, unit="images")
    computed, recovered, failures = 0, 0, []
    with bar:
        for result in _results(stage, job, chunks, execution):
            computed += result.computed
            recovered += result.already_done
            failures += result.failures
            bar.advance(result.computed + result.already_done + len(result.failures))
    if failures:
        shown = "; ".join(failures[:20]) + (f"; … {len(failures) - 20} more" if len(failures) > 20 else "")
        raise ValueError(f"{stage}: {len(failures)} image(s) failed (the others are kept for a rerun): {shown}")
    written = [line for path in job.work.glob(f"{JOURNAL_PREFIX}*") for line in path.read_text().splitlines()]
    return {"images": len(ids), "computed": computed, "resumed": len(ids) - len(todo), "recovered": recovered,
            "recomputed": len(written) - len(set(written))}  # fmt: skip


def _results(stage: str, job: ImageJob, chunks: Chunks, execution: ExecutionParams) -> Iterator[ChunkResult]:
    """Chunk results as they complete, on the runner of ``execution``."""
    if not chunks:
        return
    if in_prefect_run():
        yield from _prefect_results(stage, job, chunks, execution)
    elif not execution.uses_dask:
        for chunk in chunks:
            yield compute_chunk(job, chunk)
    else:
        yield from _dask_results(stage, job, chunks, execution)


def _dask_results(stage: str, job: ImageJob, chunks: Chunks, execution: ExecutionParams) -> Iterator[ChunkResult]:
    from distributed import as_completed

    with dask_client(execution) as client:
        resources = gpu_resources(client) if job.uses_gpu else None
        futures = [
            client.submit(compute_chunk, job, chunk, key=f"{stage}-{job.key[:12]}-{index}", retries=execution.retries,
                          resources=resources, pure=False)
            for index, chunk in enumerate(chunks)
        ]  # fmt: skip
        for future in as_completed(futures):
            result = future.result()
            future.release()  # a finished chunk held by a worker that dies later is not recomputed
            yield result


def _prefect_results(
    stage: str, job: ImageJob, chunks: Chunks, execution: ExecutionParams
) -> Iterator[ChunkResult]:  # fmt: skip
    """Each chunk a Prefect task run: called in turn in process, submitted to the flow's Dask task runner."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE
    from prefect.context import FlowRunContext
    from prefect.futures import as_completed

    chunk_task = task(compute_chunk, name=f"{stage}-chunk", retries=execution.retries, cache_policy=NO_CACHE)
    named = [chunk_task.with_options(name=f"{stage} chunk {i + 1}/{len(chunks)}") for i in range(len(chunks))]
    if not execution.uses_dask:
        for one, chunk in zip(named, chunks, strict=True):
            yield one(job, chunk)
        return
    import dask

    client = FlowRunContext.get().task_runner.client
    resources = gpu_resources(client) if job.uses_gpu else None
    with dask.annotate(**({"resources": resources} if resources else {})):
        futures = [one.submit(job, chunk) for one, chunk in zip(named, chunks, strict=True)]
    for future in as_completed(futures):
        yield future.result()


def gpu_resources(client) -> dict[str, int] | None:
    """``{"GPU": 1}`` when the cluster's workers advertise a GPU resource (``--resources GPU=1``), else None."""
    workers = client.scheduler_info().get("workers", {}).values()
    return {"GPU": 1} if any(worker.get("resources", {}).get("GPU") for worker in workers) else None


def local_cluster_options(execution: ExecutionParams) -> dict:
    """A LocalCluster of single-threaded worker processes (one model each), quiet, no dashboard.

    Dask always opens an HTTP endpoint per scheduler and worker; here it has no routes (every request is a 404)
    and listens on 127.0.0.1 at a free port, never on the dashboard's 8787.

    Its workers keep glibc's adaptive malloc: Dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` (set before it
    spawns a worker) turns each large numpy temporary into an mmap/munmap pair, which made the superpixel
    proposals 25 % slower here (system time ×4). The setting is unset in this process's Dask config.
    """
    import logging

    import dask

    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                     "distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []})  # fmt: skip
    return {"n_workers": execution.workers or os.cpu_count() or 1, "threads_per_worker": 1, "processes": True,
            "dashboard_address": "127.0.0.1:0", "scheduler_kwargs": {"dashboard": False},
            "silence_logs": logging.ERROR}  # fmt: skip


@contextmanager
def dask_client(execution: ExecutionParams):
    """A Dask client on a new LocalCluster (closed afterwards) or on the scheduler at ``execution.runner``."""
    from distributed import Client, LocalCluster

    if execution.runner == "local":
        with LocalCluster(**local_cluster_options(execution)) as cluster, Client(cluster) as client:
            yield client
    else:
        try:
            client = Client(execution.runner, timeout=f"{execution.connect_timeout}s")
        except OSError as error:  # distributed raises OSError (a TimeoutError) when nothing answers in time
            raise OSError(f"execution.runner: no Dask scheduler answered at {execution.runner} within "
                          f"{execution.connect_timeout:g} s ({error}); start it, or set runner: local") from None
        with client:
            yield client


def task_runner(execution: ExecutionParams):
    """The Prefect task runner of a per-image stage's flow: Dask's for ``local`` or an address, else None."""
    if not execution.uses_dask:
        return None
    from prefect_dask import DaskTaskRunner

    if execution.runner == "local":
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=local_cluster_options(execution))
    return DaskTaskRunner(address=execution.runner, client_kwargs={"timeout": f"{execution.connect_timeout}s"})
