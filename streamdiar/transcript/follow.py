"""Transcript segments read from JSON lines that keep growing while the audio is diarized.

A file is polled (a short sleep between reads, no busy wait) until the diarization is done
and the file has not grown for `idle` seconds; standard input is read until its end.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from streamdiar.transcript.readers import TranscriptError, parse_json_line
from streamdiar.transcript.types import Segment

POLL_SECONDS = 0.1


async def follow_segments(
    source: str, diarized: asyncio.Event, idle: float, poll: float = POLL_SECONDS
) -> AsyncIterator[Segment]:
    """Segments of the JSON lines at `source` (a path, or `-` for standard input) as whole
    lines are appended; blank lines are skipped; a line still being written waits for its end."""
    if source == "-":
        async for segment in _stdin_segments():
            yield segment
        return
    try:
        file = Path(source).open(encoding="utf-8")
    except FileNotFoundError:
        raise TranscriptError(f"{source}: no such file") from None
    except OSError as error:
        raise TranscriptError(f"{source}: cannot read: {error.strerror}") from None
    with file:
        number = 0
        partial = ""
        grown = time.monotonic()
        while True:
            line = file.readline()
            if line:
                grown = time.monotonic()
                partial += line
                if not partial.endswith("\n"):
                    continue
                number += 1
                whole, partial = partial, ""
                if whole.strip():
                    yield parse_json_line(whole, source, number)
                continue
            if diarized.is_set() and time.monotonic() - grown >= idle:
                break
            await asyncio.sleep(poll)
    if partial.strip():  # a last line without its line break
        yield parse_json_line(partial, source, number + 1)


async def _stdin_segments() -> AsyncIterator[Segment]:
    number = 0
    while line := await asyncio.to_thread(sys.stdin.readline):
        number += 1
        if line.strip():
            yield parse_json_line(line, "<stdin>", number)
