"""Overlapping fixed-length windows cut from a stream of audio blocks, in bounded memory."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import numpy as np

from streamdiar.core.types import SAMPLE_RATE, Window


class Windower:
    """Cuts windows of `duration` seconds every `step` seconds from pushed blocks.

    Only the samples not yet consumed by a window are kept, so memory stays at about one
    window whatever the stream length. Blocks are joined only when a window is due (joining
    them as they came copied the kept audio again for each block). At the end of the stream
    one last window, zero-padded, covers the tail that the full windows missed.
    """

    def __init__(self, duration: float, step: float) -> None:
        self.window_samples = round(duration * SAMPLE_RATE)
        self.step_samples = round(step * SAMPLE_RATE)
        if self.window_samples < 1 or self.step_samples < 1:
            raise ValueError("window duration and step must each hold at least one sample")
        if step > duration:
            raise ValueError(f"window step ({step} s) must not exceed its duration ({duration} s)")
        self._buffer = np.zeros(0, dtype=np.float32)  # (samples,) from _buffer_start on
        self._pending: list[np.ndarray] = []  # (samples,) blocks pushed after _buffer
        self._buffer_start = 0  # sample index of _buffer[0]
        self._next_index = 0
        self._received = 0  # samples pushed so far

    def _next_start(self) -> int:
        return self._next_index * self.step_samples

    def _emit(self, valid: int) -> Window:
        self._join()
        offset = self._next_start() - self._buffer_start
        samples = self._buffer[offset : offset + self.window_samples]
        if len(samples) < self.window_samples:
            samples = np.pad(samples, (0, self.window_samples - len(samples)))
        window = Window(
            index=self._next_index,
            start=self._next_start() / SAMPLE_RATE,
            samples=samples.copy(),
            valid=valid,
        )
        self._next_index += 1
        drop = min(self._next_start() - self._buffer_start, len(self._buffer))
        self._buffer = self._buffer[drop:]
        self._buffer_start += drop
        return window

    def push(self, block: np.ndarray) -> list[Window]:
        """Add a block (samples,) and return the windows it completes."""
        self._pending.append(np.array(block, dtype=np.float32))  # a copy: callers reuse theirs
        self._received += len(block)
        windows = []
        while self._next_start() + self.window_samples <= self._received:
            windows.append(self._emit(self.window_samples))
        return windows

    def _join(self) -> None:
        """Move the pending blocks into the buffer."""
        if self._pending:
            self._buffer = np.concatenate([self._buffer, *self._pending])
            self._pending = []

    def finish(self) -> list[Window]:
        """The zero-padded window covering the tail, if the full windows did not reach it."""
        start = self._next_start()
        previous_end = start - self.step_samples + self.window_samples
        if start >= self._received or (self._next_index > 0 and previous_end >= self._received):
            return []
        return [self._emit(self._received - start)]


async def windows(blocks: AsyncIterable[np.ndarray], windower: Windower) -> AsyncIterator[Window]:
    """Windows from an async stream of blocks, the padded tail window last."""
    async for block in blocks:
        for window in windower.push(block):
            yield window
    for window in windower.finish():
        yield window
