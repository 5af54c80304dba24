"""The streaming pipeline: blocks -> windows -> batched inference -> stitcher -> turns.

Three stages run concurrently: decoding and windowing, inference, stitching. Bounded queues
join them, so that a slow stage holds back the ones before it instead of letting windows or
results pile up. Inference runs in a worker thread, so that the event loop decodes and
stitches while the model computes the next batch.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from streamdiar.core.backend import Backend
from streamdiar.core.stitching import Stitcher
from streamdiar.core.types import SAMPLE_RATE, LocalSpeakers, Turn, Window
from streamdiar.core.voiceprints import Naming
from streamdiar.stream.windows import Windower, windows

TurnCallback = Callable[[Turn], None]
Inferred = tuple[list[Window], list[LocalSpeakers]]  # a batch of windows and their results


@dataclass
class PipelineStats:
    """What a run has done so far, for progress displays and benchmarks."""

    audio_seconds: float = 0.0  # audio decoded
    decode_seconds: float = 0.0  # waiting for the source's blocks
    committed_seconds: float = 0.0  # timeline final up to here
    windows: int = 0
    batches: int = 0
    inference_seconds: float = 0.0
    stitching_seconds: float = 0.0
    speakers: set[str] = field(default_factory=set)
    fallbacks: list[str] = field(default_factory=list)
    namings: list[Naming] = field(default_factory=list)  # speakers named after enrolled people


def _out_of_memory(error: RuntimeError) -> bool:
    """CUDA raises OutOfMemoryError; MPS and some CUDA paths a plain RuntimeError that says so."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


class StreamingDiarizer:
    """Runs one stream through a backend and a stitcher, handing each committed turn to
    `on_turn` as soon as it is final.

    Live, a batch is whatever windows wait for the model (one while it keeps up), and each
    window's result is its own. With `whole_batches` (files, whose audio is all at hand), every
    batch of `run` is `batch_size` consecutive windows (the last one may be shorter) whatever
    the timing, and the backend may share work across a batch's windows: the turns depend on
    the batch size, never on timing, and a batch size of 1 gives the live results.
    """

    def __init__(
        self,
        backend: Backend,
        stitcher: Stitcher,
        window_duration: float,
        window_step: float,
        batch_size: int = 1,
        queue_windows: int = 64,
        whole_batches: bool = False,
    ) -> None:
        self.backend = backend
        self.stitcher = stitcher
        self.window_duration = window_duration
        self.window_step = window_step
        self.batch_size = max(1, batch_size)
        self.queue_windows = max(queue_windows, self.batch_size)
        self.whole_batches = whole_batches
        self.stats = PipelineStats(namings=stitcher.namings)

    async def run(self, blocks: AsyncIterable[np.ndarray], on_turn: TurnCallback) -> PipelineStats:
        windows_queue: asyncio.Queue[Window | None] = asyncio.Queue(self.queue_windows)
        # results of at most two batches wait for the stitcher
        results_queue: asyncio.Queue[Inferred | None] = asyncio.Queue(2)
        stages = [
            asyncio.create_task(self._produce(blocks, windows_queue)),
            asyncio.create_task(self._infer_all(windows_queue, results_queue)),
        ]
        try:
            await self._stitch_all(results_queue, on_turn)
            await asyncio.gather(*stages)
        finally:
            for stage in stages:
                stage.cancel()
            await asyncio.gather(*stages, return_exceptions=True)
        return self.stats

    def push_windows(self, windows: list[Window]) -> list[Turn]:
        """The turns committed by the stream's next `windows`, inferred one at a time and
        stitched in the calling thread: the pipeline without an event loop, for audio an
        application pushes. One window per model call, because batches of other sizes round
        differently (1e-6 on one CPU thread), and pushed blocks of any size must give the
        same turns."""
        turns: list[Turn] = []
        for window in windows:
            self._stitch([window], self._infer([window], shared=False), turns.append)
        return turns

    def flush(self) -> list[Turn]:
        """The turns still open at the end of the stream, committed."""
        turns: list[Turn] = []
        self._emit(self.stitcher.flush(), turns.append)
        return turns

    async def _produce(self, blocks: AsyncIterable[np.ndarray], queue: asyncio.Queue) -> None:
        # The end of the stream, or an error, is passed on as None: the stages after this one
        # still finish and flush what came before, then `run` raises the error.
        try:
            async for window in windows(self._counted(blocks), Windower(self.window_duration, self.window_step)):
                await queue.put(window)
        except Exception:
            await queue.put(None)
            raise
        await queue.put(None)

    async def _counted(self, blocks: AsyncIterable[np.ndarray]) -> AsyncIterable[np.ndarray]:
        iterator = aiter(blocks)
        while True:
            started = time.perf_counter()
            try:
                block = await anext(iterator)
            except StopAsyncIteration:
                return
            finally:
                self.stats.decode_seconds += time.perf_counter() - started
            self.stats.audio_seconds += len(block) / SAMPLE_RATE
            yield block

    async def _infer_all(self, windows_queue: asyncio.Queue, results_queue: asyncio.Queue) -> None:
        """Batches of the windows waiting (at most batch_size; with whole_batches, exactly
        batch_size but at the end), through the model, always in the same worker thread: each
        thread that allocates gets its own malloc arena, and batches spread over a pool of
        threads would keep growing the memory held."""
        loop = asyncio.get_running_loop()
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamdiar-inference")
        try:
            finished = False
            while not finished:
                batch = [await windows_queue.get()]
                while batch[-1] is not None and len(batch) < self.batch_size:
                    if self.whole_batches:
                        batch.append(await windows_queue.get())
                    elif windows_queue.empty():
                        break
                    else:
                        batch.append(windows_queue.get_nowait())
                if batch[-1] is None:
                    finished = True
                    batch.pop()
                if batch:
                    # batches of one window share nothing, and run as live windows do
                    shared = self.whole_batches and self.batch_size > 1
                    results = await loop.run_in_executor(worker, self._infer, batch, shared)
                    await results_queue.put((batch, results))
        except Exception:
            await results_queue.put(None)
            raise
        finally:
            worker.shutdown(wait=False)
        await results_queue.put(None)

    async def _stitch_all(self, results_queue: asyncio.Queue, on_turn: TurnCallback) -> None:
        while (inferred := await results_queue.get()) is not None:
            self._stitch(*inferred, on_turn)
        self._emit(self.stitcher.flush(), on_turn)

    def _infer(self, batch: list[Window], shared: bool) -> list[LocalSpeakers]:
        """Results of `batch`; `shared`: its windows are consecutive, and the backend may share
        work across them."""
        waveforms = torch.from_numpy(np.stack([w.samples for w in batch]))  # (batch, samples)
        step_samples = round(self.window_step * SAMPLE_RATE) if shared else None
        # live windows say they are this stream's, for what the backend keeps of its last one
        streams = None if shared else [self] * len(batch)
        started = time.perf_counter()
        results = self._infer_or_fall_back(waveforms, step_samples, streams)
        self.stats.inference_seconds += time.perf_counter() - started
        self.stats.batches += 1
        return results

    def _infer_or_fall_back(
        self, waveforms: torch.Tensor, step_samples: int | None, streams: list[object] | None
    ) -> list:
        """Runs (batch, samples) `waveforms`, retrying the same windows when an accelerator
        fails, so that the stream goes on from where it stood: out of memory, the batch is
        halved (and so are the batches that follow) down to one window, then CPU is used;
        any other error of the accelerator moves the models to CPU at once."""
        try:
            return self.backend.infer(waveforms, step_samples, streams)
        except RuntimeError as error:  # torch.cuda.OutOfMemoryError is one too
            device = self.backend.device.type
            if device == "cpu":
                raise
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            if _out_of_memory(error) and len(waveforms) > 1:
                half = len(waveforms) // 2
                self.batch_size = min(self.batch_size, half)
                if device == "cuda":
                    torch.cuda.empty_cache()  # what the failed batch held
                self._fall_back(f"{device} ran out of memory; batches of {half} windows from now")
                first, rest = streams and streams[:half], streams and streams[half:]
                return self._infer_or_fall_back(
                    waveforms[:half], step_samples, first
                ) + self._infer_or_fall_back(waveforms[half:], step_samples, rest)
            self._fall_back(f"{device} failed ({reason}); continuing on CPU")
            self.backend.to(torch.device("cpu"))
            return self.backend.infer(waveforms, step_samples, streams)

    def _fall_back(self, message: str) -> None:
        warnings.warn(message, stacklevel=1)
        self.stats.fallbacks.append(message)

    def _stitch(self, batch: list[Window], results: list[LocalSpeakers], on_turn: TurnCallback) -> None:
        started = time.perf_counter()
        for window, local in zip(batch, results):
            self._emit(self.stitcher.push(window.index, window.start, window.valid_end, local), on_turn)
        self.stats.windows += len(batch)
        self.stats.stitching_seconds += time.perf_counter() - started

    def _emit(self, turns: list[Turn], on_turn: TurnCallback) -> None:
        self.stats.committed_seconds = self.stitcher.committed_until
        for turn in turns:
            self.stats.speakers.add(turn.speaker)
            on_turn(turn)
