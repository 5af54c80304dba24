"""The results table of a batch: a row per file as it finishes, appended to JSON lines and CSV.

Rows of earlier runs stay: a rerun appends the rows of the files it did. Each row is one line
(line breaks in a file name become spaces in the CSV) that goes out in one write call, flushed
at once; a run killed in the middle of one leaves a partial last line, which the next run cuts
off before it appends.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import BinaryIO

DONE = "done"
FAILED = "failed"


@dataclass(frozen=True)
class ResultRow:
    file: str
    uri: str
    status: str  # DONE or FAILED
    audio_seconds: float | None = None  # None where unknown (a failed file)
    speakers: int | None = None
    real_time_factor: float | None = None  # seconds of work per second of audio
    error: str = ""  # one line, for a failed file
    warning: str = ""  # one line: what a file that was done warned about (NaN samples...)

    @classmethod
    def failed(cls, file: str, uri: str, error: str) -> ResultRow:
        return cls(file, uri, FAILED, error=" ".join(error.split()))

    def as_json(self) -> dict[str, object]:
        row = asdict(self)
        for key in ("audio_seconds", "real_time_factor"):
            if row[key] is not None:
                row[key] = round(row[key], 3)
        return row


COLUMNS = [f.name for f in fields(ResultRow)]


class ResultsTable:
    """`results.jsonl` and `results.csv` in a folder, appended a row at a time (then
    `close()`, or `with contextlib.closing(ResultsTable(folder))`)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = folder / "results.jsonl"
        self.csv_path = folder / "results.csv"
        self._jsonl = _appending(self.jsonl_path)
        self._csv = _appending(self.csv_path)
        if self._csv.tell() == 0:
            self._csv.write(_csv_line(COLUMNS))

    def append(self, row: ResultRow) -> None:
        values = row.as_json()
        self._jsonl.write((json.dumps(values, ensure_ascii=False) + "\n").encode("utf-8"))
        self._csv.write(_csv_line([_one_csv_line(values[c]) for c in COLUMNS]))

    def close(self) -> None:
        self._jsonl.close()
        self._csv.close()


def _appending(path: Path) -> BinaryIO:
    """`path` opened to append whole lines, unbuffered; a partial last line is cut off."""
    stream = path.open("a+b", buffering=0)
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    if size:
        stream.seek(0)
        whole = stream.read().rfind(b"\n") + 1
        if whole < size:
            stream.truncate(whole)
        stream.seek(0, os.SEEK_END)
    return stream


def _one_csv_line(value: object) -> object:
    """A value that keeps its CSV row on one line (a line break would be quoted, not cut)."""
    if value is None:
        return ""
    return re.sub(r"[\r\n]+", " ", value) if isinstance(value, str) else value


def _csv_line(values: list[object]) -> bytes:
    text = io.StringIO()
    csv.writer(text).writerow(values)
    return text.getvalue().encode("utf-8")
