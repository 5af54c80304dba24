"""Outputs written as turns are committed.

Each sink writes a turn as one whole line in a single call and flushes it at once, so a
process killed at any moment leaves a file (or pipe) that holds only complete lines.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from streamdiar.core.types import Turn
from streamdiar.errors import StreamdiarError


class OutputError(StreamdiarError):
    """An output file cannot be opened for writing."""


class OutputWriteError(RuntimeError):
    """An output stopped taking lines during a run (disk full, device gone); it still holds
    whole lines only."""


def _rttm_field(text: str, what: str) -> str:
    """RTTM fields are whitespace-separated, so whitespace inside one would shift the rest."""
    if not text:
        raise ValueError(f"RTTM {what} must not be empty")
    return re.sub(r"\s", "_", text)


def rttm_line(uri: str, turn: Turn) -> str:
    """One turn of file `uri` as an RTTM SPEAKER line; whitespace in uri and speaker becomes `_`."""
    return (
        f"SPEAKER {_rttm_field(uri, 'uri')} 1 {turn.start:.3f} {turn.duration:.3f} "
        f"<NA> <NA> {_rttm_field(turn.speaker, 'speaker')} <NA> <NA>\n"
    )


class RttmWriter:
    """Writes committed turns as standard RTTM lines; several uris may share one file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            # unbuffered: each line goes out in one write call, so a failed one can be undone
            self._file = self.path.open("wb", buffering=0)
        except IsADirectoryError:
            raise OutputError(f"cannot write RTTM to {self.path}: it is a directory") from None
        except FileNotFoundError:
            raise OutputError(
                f"cannot write RTTM to {self.path}: directory {self.path.parent} does not exist"
            ) from None
        except PermissionError:
            raise OutputError(f"cannot write RTTM to {self.path}: permission denied") from None
        except OSError as error:
            raise OutputError(f"cannot write RTTM to {self.path}: {error.strerror}") from None
        self._whole = 0  # bytes of the complete lines written
        self._lines = 0

    def write(self, uri: str, turn: Turn) -> None:
        """Append one turn of file `uri`."""
        data = rttm_line(uri, turn).encode("utf-8")
        try:
            if self._file.write(data) != len(data):  # a short write: the disk is full
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as error:
            with contextlib.suppress(OSError):  # a device such as /dev/full cannot be truncated
                self._file.truncate(self._whole)  # drop a partial line, if the disk took one
            raise OutputWriteError(
                f"cannot write RTTM to {self.path}: {error.strerror}; "
                f"it keeps the {self._lines} turns written before"
            ) from None
        self._whole += len(data)
        self._lines += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RttmWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def turn_event(uri: str, turn: Turn) -> dict[str, Any]:
    """A committed turn as the JSON event `--jsonl` writes and `serve` sends."""
    return {
        "event": "turn",
        "uri": uri,
        "start": round(turn.start, 3),
        "end": round(turn.end, 3),
        "speaker": turn.speaker,
    }


class JsonlWriter:
    """Writes one JSON object per line: committed turns and other events, for programs."""

    def __init__(self, stream: TextIO | None = None) -> None:
        # Resolved here rather than as a default argument so a replaced sys.stdout is honoured.
        self._stream = stream if stream is not None else sys.stdout

    def write(self, uri: str, turn: Turn) -> None:
        self.write_event(turn_event(uri, turn))

    def write_event(self, event: dict[str, Any]) -> None:
        try:
            self._stream.write(json.dumps(event, ensure_ascii=False) + "\n")
            self._stream.flush()
        except BrokenPipeError:
            raise  # the reader is gone: nobody to tell
        except OSError as error:
            raise OutputWriteError(f"cannot write JSON lines: {error.strerror}") from None


_PALETTE = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")


class TimelinePrinter:
    """Prints turns as a readable timeline, one line each, a colour per speaker. A turn that
    overlaps a turn printed before it says with whom: overlapped speech shows."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console if console is not None else Console()
        self._colours: dict[str, str] = {}
        self._uri: str | None = None
        self._latest: dict[str, Turn] = {}  # speaker -> their last turn printed, in this uri

    def _colour(self, speaker: str) -> str:
        """Colours go by order of first appearance, so the first speakers never share one."""
        if speaker not in self._colours:
            self._colours[speaker] = _PALETTE[len(self._colours) % len(_PALETTE)]
        return self._colours[speaker]

    def write(self, uri: str, turn: Turn) -> None:
        # Text objects, not markup strings: a "[" in a uri or label must print as itself.
        if uri != self._uri:
            self._console.print(Text(uri, style="bold"))
            self._uri = uri
            self._latest = {}
        line = Text.assemble(
            f"{turn.start:7.2f} → {turn.end:6.2f}  ", (turn.speaker, self._colour(turn.speaker))
        )
        overlapped = [
            other
            for other in self._latest.values()
            if other.speaker != turn.speaker and other.start < turn.end and turn.start < other.end
        ]
        for other in sorted(overlapped, key=lambda t: t.speaker):
            start, end = max(turn.start, other.start), min(turn.end, other.end)
            line.append(f"  overlaps {other.speaker} {start:.2f}–{end:.2f}", style="dim")
        self._latest[turn.speaker] = turn
        self._console.print(line)
