"""A batch as a whole: which files are left, how many workers of how many threads, and where
the job stands (files and hours done, throughput, time left)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from streamdiar.batch.inputs import BatchFile
from streamdiar.batch.outputs import FileOutputs
from streamdiar.batch.results import DONE, ResultRow

# On CPU, by default, a worker per this many cores: on 2 cores, 2 workers of 1 thread each did
# more than 1 worker of 2 threads in every run (README "Archives")
CPU_THREADS_PER_WORKER = 1


def files_left(
    files: Iterable[BatchFile], out_dir: Path, transcript_format: str
) -> list[BatchFile]:
    """The files whose outputs are not all there yet, in their order."""
    return [f for f in files if not FileOutputs.of(f, out_dir, transcript_format).done()]


def plan_workers(
    cores: int, gpus: int, workers: int | None, threads: int | None
) -> tuple[int, int]:
    """How many workers, and how many CPU threads each, on `cores` CPUs and `gpus` GPUs:
    by default one worker per GPU, else one per CPU_THREADS_PER_WORKER cores; the cores are
    shared out among the workers unless `threads` says otherwise."""
    if workers is None:
        workers = gpus or max(1, cores // CPU_THREADS_PER_WORKER)
    if threads is None:
        threads = max(1, cores // workers)
    return workers, threads


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@dataclass
class BatchTally:
    """Where a run of a batch stands. The time left is the bytes left at the rate bytes were
    done so far: file sizes are known at the start, durations only once a file is read."""

    files: int  # to do in this run
    total_bytes: int
    skipped: int = 0  # done by an earlier run
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    failed: int = 0
    audio_seconds: float = 0.0  # of the files done
    done_bytes: int = 0  # of the files finished, done or failed

    @classmethod
    def of(cls, files: list[BatchFile], skipped: int = 0) -> BatchTally:
        return cls(len(files), sum(f.size for f in files), skipped)

    def add(self, row: ResultRow, size: int) -> None:
        if row.status == DONE:
            self.done += 1
            self.audio_seconds += row.audio_seconds or 0.0
        else:
            self.failed += 1
        self.done_bytes += size

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def speed(self) -> float:
        """Seconds of audio done per second of the run: x real time."""
        elapsed = self.elapsed()
        return self.audio_seconds / elapsed if elapsed > 0 else 0.0

    def time_left(self) -> float | None:
        """Seconds, None before the first file is finished."""
        if self.done_bytes == 0:
            return None
        return (self.total_bytes - self.done_bytes) * self.elapsed() / self.done_bytes

    def describe(self) -> str:
        left = self.time_left()
        parts = [
            f"{self.finished}/{self.files} files",
            f"{self.audio_seconds / 3600:.2f} h of audio",
            f"{self.speed():.1f}x real time",
            f"ETA {'?' if left is None else _clock(left)}",
        ]
        if self.failed:
            parts.append(f"{self.failed} failed")
        return ", ".join(parts)

    def summary(self) -> str:
        skipped = f", {self.skipped} done before" if self.skipped else ""
        return (
            f"{self.done} files done, {self.failed} failed{skipped}: "
            f"{self.audio_seconds / 3600:.2f} h of audio in {_clock(self.elapsed())} "
            f"({self.speed():.1f}x real time)"
        )
