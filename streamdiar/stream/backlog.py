"""The audio of one live stream waiting for the pipeline, bounded in seconds: whoever hands
blocks over (an audio callback, a socket) never waits for the model. When the pipeline falls
behind, the oldest audio is dropped and counted, so the delay behind the source stays bounded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np


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
        self._max_frames = max(1, round(max_seconds * sample_rate))
        self._blocks: deque[np.ndarray] = deque()
        self._queued_frames = 0
        self._ready = asyncio.Event()
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
            yield block
