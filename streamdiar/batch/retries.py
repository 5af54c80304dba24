"""How often a file is tried when its worker fails, alike for local processes and Ray."""

from __future__ import annotations

from collections import Counter, deque
from pathlib import Path

from streamdiar.batch.inputs import BatchFile
from streamdiar.batch.results import ResultRow
from streamdiar.errors import StreamdiarError


class BatchError(StreamdiarError):
    """The batch cannot go on: the models do not load, the cluster cannot be reached."""


class Attempts:
    """Counts the failed attempts per file. A worker's failure (the process died, the actor
    was lost, an exception that is not the file's fault) costs the file one attempt; it is
    tried again `retries` times, then recorded as failed."""

    def __init__(self, retries: int) -> None:
        if retries < 0:
            raise ValueError(f"retries must not be negative, got {retries}")
        self.retries = retries
        self._failures: Counter[Path] = Counter()

    def failed(self, file: BatchFile, reason: str, queue: deque[BatchFile]) -> ResultRow | None:
        """Puts `file` back at the head of `queue` and returns None while it has attempts
        left; then returns the row that records its failure."""
        self._failures[file.path] += 1
        tries = self._failures[file.path]
        if tries <= self.retries:
            queue.appendleft(file)
            return None
        times = "once" if tries == 1 else f"{tries} times"
        return ResultRow.failed(str(file.path), file.uri, f"{reason} (tried {times})")


def one_line(error: BaseException) -> str:
    """An unexpected exception as one line that names its type."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
