"""Progress of a batch on stderr: one bar over all files for people (files and hours done,
x real time, time left, failures), one `[PROGRESS]` line per file for programs, or nothing
but the summary at the end. The displays of `streamdiar diarize`, told about files as they
finish rather than about positions in one file."""

from __future__ import annotations

from pathlib import Path

from streamdiar.batch.job import BatchTally
from streamdiar.batch.results import DONE, ResultRow
from streamdiar.cli.progress import PlainProgress, ProgressDisplay, RichProgress, progress_mode


def describe_row(row: ResultRow) -> str:
    """One line about a finished file."""
    name = Path(row.file).name
    if row.status != DONE:
        return f"failed {name}: {row.error}"
    seconds = "?" if row.audio_seconds is None else f"{row.audio_seconds:.1f}"
    speakers = f"{row.speakers} speaker{'' if row.speakers == 1 else 's'}"
    factor = row.real_time_factor
    factor_text = "" if factor is None else f", real-time factor {factor:.3f}"
    warning = f" (warning: {row.warning})" if row.warning else ""
    return f"done {name}: {seconds} s, {speakers}{factor_text}{warning}"


class BatchDisplay(ProgressDisplay):
    """Notes only, as plain lines (mode none): no line per file."""

    def start_batch(self, tally: BatchTally) -> None:
        return None

    def finished(self, row: ResultRow, tally: BatchTally) -> None:
        return None


class PlainBatchDisplay(PlainProgress, BatchDisplay):
    """A `[PROGRESS]` line per finished file, with where the batch stands."""

    def finished(self, row: ResultRow, tally: BatchTally) -> None:
        self.note(f"{describe_row(row)}; {tally.describe()}")


class RichBatchDisplay(RichProgress, BatchDisplay):
    """One bar over the files of the run; a line above it for each failed file."""

    def start_batch(self, tally: BatchTally) -> None:
        self._task = self._progress.add_task("files", total=tally.files, status=tally.describe())

    def finished(self, row: ResultRow, tally: BatchTally) -> None:
        if row.status != DONE:
            self.note(describe_row(row))
        if self._task is not None:
            self._progress.update(self._task, completed=tally.finished, status=tally.describe())


def make_batch_display(mode: str) -> BatchDisplay:
    """The display for `mode`: auto is the bar on a terminal, plain lines otherwise."""
    return {"rich": RichBatchDisplay, "plain": PlainBatchDisplay, "none": BatchDisplay}[
        progress_mode(mode)
    ]()
