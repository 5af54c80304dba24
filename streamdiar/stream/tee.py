"""One live stream of audio blocks for two consumers: the diarizer, which sets the pace, and a
side consumer (a transcriber) that must never hold it back.

The main branch pulls from the source and copies each block into the side branch's queue,
which is bounded in seconds of audio. When the side consumer falls behind by more than that,
its oldest blocks are dropped and counted, and it gets silence of the same length in their
place, so that its stream times stay those of the main branch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator

import numpy as np

from streamdiar.core.types import SAMPLE_RATE


class Tee:
    """`main()` yields the blocks of `blocks` and `side()` the same blocks (mono, SAMPLE_RATE),
    or silence for those it was too slow to take. Only `main()` pulls from `blocks`."""

    def __init__(self, blocks: AsyncIterable[np.ndarray], max_side_seconds: float = 30.0) -> None:
        self._blocks = blocks
        self._max_frames = max(1, round(max_side_seconds * SAMPLE_RATE))
        self._queue: deque[np.ndarray] = deque()
        self._queued_frames = 0
        self._skipped_frames = 0  # dropped from the front of the queue, not yet made up for
        self._ready = asyncio.Event()
        self._ended = False
        self.dropped_seconds = 0.0  # audio the side consumer got as silence instead

    async def main(self) -> AsyncIterator[np.ndarray]:
        try:
            async for block in self._blocks:
                self._put(block)
                yield block
        finally:
            self.close()

    def close(self) -> None:
        """The main stream is over: `side()` ends after what is queued. Idempotent."""
        self._ended = True
        self._ready.set()

    async def side(self) -> AsyncIterator[np.ndarray]:
        while True:
            if self._skipped_frames:  # the oldest audio, dropped: it came before the queue
                skipped, self._skipped_frames = self._skipped_frames, 0
                yield np.zeros(skipped, np.float32)
            elif self._queue:
                block = self._queue.popleft()
                self._queued_frames -= len(block)
                yield block
            elif self._ended:
                return
            else:
                self._ready.clear()
                await self._ready.wait()

    def _put(self, block: np.ndarray) -> None:
        self._queue.append(block)
        self._queued_frames += len(block)
        while self._queued_frames > self._max_frames and len(self._queue) > 1:
            frames = len(self._queue.popleft())
            self._queued_frames -= frames
            self._skipped_frames += frames
            self.dropped_seconds += frames / SAMPLE_RATE
        self._ready.set()
