"""Progress of a batch on stderr: one bar over all files for people (files and hours done,
x real time, time left, failures), one `[PROGRESS]` line per file for programs, or nothing
but the summary at the end."""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from streamdiar.batch.job import BatchTally
from streamdiar.batch.results import DONE, ResultRow


def _speakers(count: int | None) -> str:
    return f"{count} speaker{'' if count == 1 else 's'}"


def describe_row(row: ResultRow) -> str:
    """One line about a finished file."""
    name = Path(row.file).name
    if row.status != DONE:
        return f"failed {name}: {row.error}"
    seconds = "?" if row.audio_seconds is None else f"{row.audio_seconds:.1f}"
    factor = "" if row.real_time_factor is None else f", real-time factor {row.real_time_factor:.3f}"
    warning = f" (warning: {row.warning})" if row.warning else ""
    return f"done {name}: {seconds} s, {_speakers(row.speakers)}{factor}{warning}"


class BatchDisplay:
    """Notes only, as plain lines (mode none): no line per file."""

    def __enter__(self) -> BatchDisplay:
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

    def start(self, tally: BatchTally) -> None:
        return None

    def finished(self, row: ResultRow, tally: BatchTally) -> None:
        return None


class PlainBatchDisplay(BatchDisplay):
    """A `[PROGRESS]` line per finished file, with where the batch stands."""

    def note(self, text: str) -> None:
        super().note(f"[PROGRESS] {text}")

    def finished(self, row: ResultRow, tally: BatchTally) -> None:
        self.note(f"{describe_row(row)}; {tally.describe()}")


class RichBatchDisplay(BatchDisplay):
    """One bar over the files of the run; a line above it for each failed file."""

    def __init__(self) -> None:
        self._console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("files"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self._console,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichBatchDisplay:
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

    def start(self, tally: BatchTally) -> None:
        self._task = self._progress.add_task("files", total=tally.files, status=tally.describe())

    def finished(self, row: ResultRow, tally: BatchTally) -> None:
        if row.status != DONE:
            self.note(describe_row(row))
        if self._task is not None:
            self._progress.update(self._task, completed=tally.finished, status=tally.describe())


def make_batch_display(mode: str) -> BatchDisplay:
    """The display for `mode`; auto is the bar on a terminal, plain lines otherwise."""
    if mode == "auto":
        mode = "rich" if sys.stderr.isatty() else "plain"
    return {"rich": RichBatchDisplay, "plain": PlainBatchDisplay, "none": BatchDisplay}[mode]()
