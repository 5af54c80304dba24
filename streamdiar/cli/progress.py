"""Progress of a diarization run on stderr: a rich bar for people, `[PROGRESS]` lines for
programs that read a subprocess's stderr, or no progress at all."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

if TYPE_CHECKING:  # the pipeline imports torch, which `streamdiar --help` should not wait for
    from streamdiar.stream.pipeline import PipelineStats

PROGRESS_MODES = ("auto", "rich", "plain", "none")


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        default="auto",
        help="progress on stderr: a bar (rich), [PROGRESS] lines (plain) or none "
        "(default: rich on a terminal, plain otherwise)",
    )


def _speakers(count: int) -> str:
    return f"{count} speaker{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class FileProgress:
    name: str
    duration: float | None  # seconds, None if unknown
    position: float  # seconds of audio whose turns are final
    elapsed: float  # wall-clock seconds
    speakers: int

    @property
    def speed(self) -> float:
        """Audio seconds per wall-clock second."""
        return self.position / self.elapsed if self.elapsed > 0 else 0.0

    def describe(self) -> str:
        total = "?" if self.duration is None else f"{self.duration:.1f}"
        return (
            f"{self.position:.1f}/{total} s {self.speed:.1f}x realtime {_speakers(self.speakers)}"
        )

    def summary(self) -> str:
        factor = self.elapsed / self.position if self.position > 0 else 0.0
        return (
            f"{self.name}: {self.position:.1f} s of audio, {_speakers(self.speakers)}, "
            f"{self.elapsed:.1f} s (real-time factor {factor:.3f}, {self.speed:.1f}x real time)"
        )


def measure(
    name: str, duration: float | None, stats: PipelineStats, started: float
) -> FileProgress:
    """Where a run stands; `started` is its time.perf_counter() at the start."""
    # committed_seconds runs past the audio at the end, where the last frame is rounded up
    position = min(stats.committed_seconds, stats.audio_seconds)
    elapsed = time.perf_counter() - started
    return FileProgress(name, duration, position, elapsed, len(stats.speakers))


class ProgressDisplay:
    """Shows no progress (mode none); notes are still printed, as plain lines."""

    interval = 0.5  # seconds between updates

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def note(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def start(self, name: str, duration: float | None) -> None:
        return None

    def update(self, progress: FileProgress) -> None:
        return None

    def finish(self, progress: FileProgress) -> None:
        return None


class PlainProgress(ProgressDisplay):
    """One `[PROGRESS]` line per update, for programs that parse stderr."""

    def note(self, text: str) -> None:
        super().note(f"[PROGRESS] {text}")

    def update(self, progress: FileProgress) -> None:
        self.note(f"{progress.name} {progress.describe()}")

    def finish(self, progress: FileProgress) -> None:
        self.note(f"done {progress.name} {progress.describe()}")


class RichProgress(ProgressDisplay):
    """A bar per file that stays on screen once the file is done."""

    interval = 0.2

    def __init__(self) -> None:
        self._console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self._console,
            # Output on stdout goes above the bar when both share a terminal, and only then:
            # redirected, it would reach the terminal through the bar's console.
            redirect_stdout=sys.stdout.isatty(),
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def note(self, text: str) -> None:
        self._console.print(Text(text))

    def start(self, name: str, duration: float | None) -> None:
        self._task = self._progress.add_task(name, total=duration, status="")

    def update(self, progress: FileProgress, total: float | None = None) -> None:
        if self._task is not None:
            self._progress.update(
                self._task, total=total, completed=progress.position, status=progress.describe()
            )

    def finish(self, progress: FileProgress) -> None:
        self.update(progress, total=progress.position)


def progress_mode(mode: str) -> str:
    """`mode`, where auto is rich on a terminal and plain lines otherwise."""
    if mode == "auto":
        return "rich" if sys.stderr.isatty() else "plain"
    return mode


def make_progress(mode: str) -> ProgressDisplay:
    """The display for `mode` (see progress_mode)."""
    return {"rich": RichProgress, "plain": PlainProgress, "none": ProgressDisplay}[
        progress_mode(mode)
    ]()


async def follow(
    display: ProgressDisplay,
    name: str,
    duration: float | None,
    stats: PipelineStats,
    started: float,
) -> None:
    """Updates `display` from the `stats` of a running diarizer until cancelled."""
    while True:
        await asyncio.sleep(display.interval)
        display.update(measure(name, duration, stats, started))
