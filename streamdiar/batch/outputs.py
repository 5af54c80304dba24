"""The outputs a file of a batch owes, written so that their presence means they are whole.

Each output is written under a temporary name beside its final one and renamed once complete
(a rename within a folder is atomic), so a batch killed at any moment leaves either a whole
output or none, and a file is done exactly when all its outputs exist.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from streamdiar.batch.inputs import BatchFile

PARTIAL_SUFFIX = ".partial"
TURNS_SUFFIX = ".turns.jsonl"  # not .jsonl: a file named "results" must not meet the table


@dataclass(frozen=True)
class FileOutputs:
    rttm: Path
    turns: Path  # JSON lines, one event per turn
    transcript: Path | None  # the speaker-labelled transcript, when a transcript was given

    @classmethod
    def of(cls, file: BatchFile, out_dir: Path, transcript_format: str) -> FileOutputs:
        """Where `file`'s outputs go under `out_dir` (its folder, then its uri)."""
        folder = out_dir / file.folder
        transcript = folder / f"{file.uri}.{transcript_format}" if file.transcript else None
        return cls(folder / f"{file.uri}.rttm", folder / (file.uri + TURNS_SUFFIX), transcript)

    def paths(self) -> list[Path]:
        return [p for p in (self.rttm, self.turns, self.transcript) if p is not None]

    def done(self) -> bool:
        """Whether every output exists, whole (only complete outputs get their names)."""
        return all(p.exists() for p in self.paths())


def partial(path: Path) -> Path:
    """The temporary name `path` is written under."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


@contextmanager
def written_whole(paths: list[Path]) -> Iterator[Callable[[Path], TextIO]]:
    """Gives `open_partial(path)`, which opens the temporary file of one of `paths` for
    writing; when the block ends without an error, each is renamed to its final name (the
    last rename makes the file done), else the temporary files are removed."""
    opened: list[TextIO] = []

    def open_partial(path: Path) -> TextIO:
        if path not in paths:
            raise ValueError(f"{path} is not one of the outputs being written")
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = partial(path).open("w", encoding="utf-8")
        opened.append(stream)
        return stream

    try:
        yield open_partial
        for stream in opened:
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
        for path in paths:
            os.replace(partial(path), path)
    finally:
        for stream in opened:
            stream.close()
        for path in paths:
            partial(path).unlink(missing_ok=True)
