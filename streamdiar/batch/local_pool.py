"""Batch workers as local processes: one per GPU, or N on CPU, each loading the models once.

Each worker is a process of its own (started with `spawn`, so that torch starts fresh in it)
that talks to the batch over a pipe: a file goes out, its results row comes back. A worker
that dies (a crash, the kernel's out-of-memory killer) costs its file one attempt and is
replaced. Workers end with the batch, and by themselves when the batch process is gone.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from streamdiar.batch.inputs import BatchFile
from streamdiar.batch.results import ResultRow
from streamdiar.batch.retries import Attempts, BatchError, one_line
from streamdiar.batch.worker import FileWorker, LoadReport, WorkerSettings

ORPHAN_CHECK_SECONDS = 0.5


def local_results(
    files: list[BatchFile],
    settings: WorkerSettings,
    workers: int,
    retries: int,
    gpus: int = 0,
    on_load: Callable[[LoadReport], None] | None = None,
) -> Iterator[ResultRow]:
    """The results row of each file as it finishes, from `workers` processes that take the
    files in their order. With `gpus`, worker i sees only GPU i % gpus. `on_load` hears
    each worker's LoadReport. Raises BatchError when a worker cannot load the models."""
    pending = deque(files)
    attempts = Attempts(retries)
    pool = [_Worker.start(slot, settings, gpus) for slot in range(min(workers, len(files)))]
    try:
        while True:
            for worker in pool:
                message = worker.message()
                if message is None:
                    continue
                kind, value = message
                if kind == "loaded":
                    if on_load is not None:
                        on_load(value)
                elif kind == "load failed":
                    raise BatchError(value)
                elif kind == "row":
                    yield value
                elif not worker.loaded:  # died while loading: so would the next one
                    raise BatchError(f"a worker died while loading the models: {value}")
                elif worker.file is not None:  # an error, or died, while at work on a file
                    failure = attempts.failed(worker.file, value, pending)
                    if failure is not None:
                        yield failure
                if kind == "died":
                    worker.restart()
                else:
                    worker.file = None
                    if pending:
                        worker.send(pending.popleft())
            if not pending and all(worker.file is None for worker in pool):
                return
            wait([w.connection for w in pool] + [w.process.sentinel for w in pool])
    finally:
        for worker in pool:
            worker.stop()


@dataclass
class _Worker:
    slot: int
    settings: WorkerSettings
    gpus: int
    process: BaseProcess
    connection: Connection
    file: BatchFile | None = None  # the file it is working on
    loaded: bool = False

    @classmethod
    def start(cls, slot: int, settings: WorkerSettings, gpus: int) -> _Worker:
        context = multiprocessing.get_context("spawn")
        here, there = context.Pipe()
        gpu = str(slot % gpus) if gpus else None
        process = context.Process(
            target=_serve,
            args=(there, settings, gpu, os.getpid()),
            name=f"streamdiar-batch-{slot}",
            daemon=True,
        )
        process.start()
        there.close()
        return cls(slot, settings, gpus, process, here)

    def message(self) -> tuple[str, Any] | None:
        """What the process has said, ("died", reason) if it is gone, None if neither."""
        if self.connection.poll():
            try:
                kind, value = self.connection.recv()
            except (EOFError, OSError):
                return self._died()
            if kind == "loaded":
                self.loaded = True
            return kind, value
        return None if self.process.is_alive() else self._died()

    def _died(self) -> tuple[str, str]:
        self.process.join()
        return "died", f"its worker process died (exit code {self.process.exitcode})"

    def send(self, file: BatchFile) -> None:
        self.file = file
        self.connection.send(file)

    def restart(self) -> None:
        """A new process in place of this dead one."""
        self.stop()
        new = _Worker.start(self.slot, self.settings, self.gpus)
        self.process, self.connection = new.process, new.connection
        self.file, self.loaded = None, False

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.connection.close()


def _serve(connection: Connection, settings: WorkerSettings, gpu: str | None, parent: int) -> None:
    """A worker process: loads the models, then diarizes each file it is sent until told to
    stop (None) or the batch process is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the batch's to handle
    threading.Thread(target=_end_with, args=(parent,), daemon=True).start()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu  # before torch is imported
    worker = FileWorker(settings)
    try:
        connection.send(("loaded", worker.load()))
    except Exception as error:  # the batch reports it and stops
        connection.send(("load failed", one_line(error)))
        return
    while True:
        try:
            file = connection.recv()
        except EOFError:
            return
        if file is None:
            return
        try:
            connection.send(("row", worker.process(file)))
        except Exception as error:  # not the file's fault: the batch tries it again
            connection.send(("error", one_line(error)))


def _end_with(parent: int) -> None:
    """Ends this process once `parent` has gone (killed, even by SIGKILL), so that no worker
    goes on writing outputs that a rerun writes too."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(1)

