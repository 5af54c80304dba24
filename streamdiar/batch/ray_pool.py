"""Batch workers as Ray actors: the same job on one machine (a Ray of its own) or on a cluster
that is already running, unchanged.

Each actor is a FileWorker that holds the models, with `num_cpus` (its threads) and, where the
cluster has GPUs, `num_gpus=1`. Files and rows travel as small objects; the audio is read, and
the outputs written, where the actor runs: on a cluster, input and output paths must be the
same on every node (a shared file system). Ray is an optional extra:
`pip install 'streamdiar[ray]'`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from streamdiar.batch.inputs import BatchFile
from streamdiar.batch.results import ResultRow
from streamdiar.batch.retries import Attempts, BatchError, one_line
from streamdiar.batch.worker import FileWorker, LoadReport, WorkerSettings

# the object store of a Ray started here: only paths and rows go through it, never audio
OBJECT_STORE_BYTES = 256 * 1024**2


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise BatchError("--ray needs Ray: pip install 'streamdiar[ray]'") from None
    return ray


def connect(address: str | None) -> tuple[int, int]:
    """Joins the Ray cluster at `address` ("auto": the one running on this machine), or with
    None starts a Ray of its own on this machine; returns the cluster's CPUs and GPUs. In a
    process already connected to Ray, that connection is used."""
    ray = import_ray()
    if not ray.is_initialized():
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
        try:
            if address is None:
                ray.init(
                    include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, **quiet
                )
            else:
                ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = f" at {address}" if address else ""
            raise BatchError(f"cannot start or reach Ray{where}: {one_line(error)}") from None
    resources = ray.cluster_resources()
    return int(resources.get("CPU", 0)), int(resources.get("GPU", 0))


def ray_results(
    files: list[BatchFile],
    settings: WorkerSettings,
    workers: int,
    retries: int,
    gpus_per_worker: int = 0,
    on_load: Callable[[LoadReport], None] | None = None,
) -> Iterator[ResultRow]:
    """The results row of each file as it finishes, from `workers` actors on the connected
    cluster that take the files in their order. An actor that is lost costs its file one
    attempt and is replaced. Raises BatchError when an actor cannot load the models."""
    ray = import_ray()
    actor_class = ray.remote(FileWorker).options(
        num_cpus=settings.threads or 1, num_gpus=gpus_per_worker, max_restarts=0
    )
    pending = deque(files)
    attempts = Attempts(retries)
    loading: dict[Any, Any] = {}  # ref of load() -> actor
    working: dict[Any, tuple[Any, BatchFile]] = {}  # ref of process() -> actor, file
    idle: list[Any] = []

    def start() -> None:
        actor = actor_class.remote(settings)
        loading[actor.load.remote()] = actor

    for _ in range(min(workers, len(files))):
        start()
    try:
        while pending or working:
            (ref,), _ = ray.wait([*loading, *working], num_returns=1)
            if ref in loading:
                actor = loading.pop(ref)
                try:
                    report = ray.get(ref)
                except ray.exceptions.RayTaskError as error:
                    raise BatchError(one_line(_cause(error)), pending) from None
                except ray.exceptions.RayActorError as error:
                    raise BatchError(f"a worker died while loading the models: {error}") from None
                if on_load is not None:
                    on_load(report)
                idle.append(actor)
            else:
                actor, file = working.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayActorError as error:
                    ray.kill(actor)
                    start()
                    row = attempts.failed(file, f"its Ray worker was lost: {error}", pending)
                except ray.exceptions.RayTaskError as error:
                    idle.append(actor)
                    row = attempts.failed(file, one_line(_cause(error)), pending)
                else:
                    idle.append(actor)
                if row is not None:
                    yield row
            while idle and pending:
                actor = idle.pop()
                file = pending.popleft()
                working[actor.process.remote(file)] = (actor, file)
    finally:
        for actor in [*loading.values(), *(a for a, _ in working.values()), *idle]:
            ray.kill(actor)


def _cause(error: Exception) -> BaseException:
    """The exception raised inside a Ray task."""
    return getattr(error, "cause", None) or error
