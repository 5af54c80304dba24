"""TurnStream: the turns of one async stream, each as soon as it is committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator

import numpy as np

from streamdiar.core.types import Turn
from streamdiar.stream.pipeline import PipelineStats, StreamingDiarizer


class TurnStream(AsyncIterator[Turn]):
    """`async for turn in diarizer.stream(source)`: each turn once it is final, in the order
    of commitment. Decoding, the model and the stitcher run concurrently with the loop's other
    work (the model in a worker thread). Errors of the source (AudioError...) are raised by the
    iteration. Leaving the loop early: `await stream.aclose()` stops the work at once.
    """

    def __init__(self, pipeline: StreamingDiarizer, blocks: AsyncIterable[np.ndarray]) -> None:
        self.stats: PipelineStats = pipeline.stats  # how far the stream has got, for progress
        self._turns = _committed_turns(pipeline, blocks)

    async def __anext__(self) -> Turn:
        return await anext(self._turns)

    async def aclose(self) -> None:
        await self._turns.aclose()


async def _committed_turns(
    pipeline: StreamingDiarizer, blocks: AsyncIterable[np.ndarray]
) -> AsyncGenerator[Turn, None]:
    committed: asyncio.Queue[Turn | None] = asyncio.Queue()  # None: the pipeline has ended

    async def run() -> None:
        try:
            await pipeline.run(blocks, committed.put_nowait)
        finally:
            committed.put_nowait(None)

    running = asyncio.create_task(run())
    try:
        while (turn := await committed.get()) is not None:
            yield turn
        await running  # raises what ended the pipeline, if anything did
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
