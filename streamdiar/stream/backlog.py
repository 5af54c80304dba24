"""The audio of one live stream waiting for the pipeline, bounded in seconds: whoever hands
blocks over (an audio callback, a socket) never waits for the model. When the pipeline falls
behind, the oldest audio is dropped and counted, so the delay behind the source stays bounded.
A source that can wait (a socket sending faster than real time) waits instead while it is
ahead of the wall clock (`put_paced`).
"""

from __future__ import annotations

import asyncio
from collections import deque
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np


PACED_RECHECK_SECONDS = 0.1  # how often a waiting source checks whether it fell behind


@dataclass
class CaptureStats:
    """Seconds of audio at each stage of capture."""

    captured_seconds: float = 0.0  # all that was handed over
    dropped_seconds: float = 0.0  # oldest audio dropped while the pipeline was behind
    overflows: int = 0  # blocks PortAudio flagged as input overflow (audio lost before us)

    def describe_losses(self) -> str:
        return f"{self.dropped_seconds:.1f} s dropped, {self.overflows} input overflows"


class AudioBacklog:
    """Blocks of `sample_rate` Hz, oldest first, at most `max_seconds` of them (and always the
    newest block). `put` and `close` run on the event loop that iterates `blocks()`."""

    def __init__(self, sample_rate: int, max_seconds: float, stats: CaptureStats) -> None:
        self.sample_rate = sample_rate
        self.stats = stats
        self.max_seconds = max_seconds
        self._max_frames = max(1, round(max_seconds * sample_rate))
        self.taken_seconds = 0.0  # audio handed to the pipeline
        self._blocks: deque[np.ndarray] = deque()
        self._queued_frames = 0
        self._ready = asyncio.Event()
        self._taken = asyncio.Event()
        self.closed = False

    def put(self, block: np.ndarray) -> None:
        """Queues a block (its first axis is frames); a block put after `close` is ignored."""
        if self.closed:
            return
        self.stats.captured_seconds += len(block) / self.sample_rate
        self._blocks.append(block)
        self._queued_frames += len(block)
        while self._queued_frames > self._max_frames and len(self._blocks) > 1:
            oldest = self._blocks.popleft()
            self._queued_frames -= len(oldest)
            self.stats.dropped_seconds += len(oldest) / self.sample_rate
        self._ready.set()

    async def put_paced(self, block: np.ndarray, elapsed_seconds: Callable[[], float]) -> None:
        """Queues a block from a source that can wait: while the backlog is full, waits for the
        pipeline as long as the stream is not behind the wall clock (`elapsed_seconds`, the
        real time since the stream began) by more than the backlog; once it is, `put` drops
        the oldest audio. A stream sent faster than real time is thus diarized completely
        when the models can go as fast, and a stream the models cannot keep up with stays at
        most the backlog behind."""
        while (
            self._blocks
            and self._queued_frames + len(block) > self._max_frames
            and self.taken_seconds >= elapsed_seconds() - self.max_seconds
            and not self.closed
        ):
            self._taken.clear()
            with contextlib.suppress(TimeoutError):  # the wall clock moves on meanwhile
                await asyncio.wait_for(self._taken.wait(), PACED_RECHECK_SECONDS)
        self.put(block)

    def close(self) -> None:
        """No more blocks: `blocks()` ends after handing out those queued. Idempotent."""
        self.closed = True
        self._ready.set()

    async def blocks(self) -> AsyncIterator[np.ndarray]:
        """The queued blocks as they come, until the backlog is closed and empty."""
        while True:
            while not self._blocks:
                if self.closed:
                    return
                self._ready.clear()
                await self._ready.wait()
            block = self._blocks.popleft()
            self._queued_frames -= len(block)
            self.taken_seconds += len(block) / self.sample_rate
            self._taken.set()
            yield block
