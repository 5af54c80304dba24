import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from streamdiar.core.embedded import EmbeddedBackend
from streamdiar.core.types import SAMPLE_RATE, Turn
from streamdiar.session import build_diarizer
from streamdiar.stream.sources import array_blocks

pytestmark = pytest.mark.realtime  # turns are timed against the audio still coming in


def test_turns_come_out_while_the_audio_is_still_coming_in(shared_data):
    audio, rate = sf.read(shared_data / "dev" / "sample.wav", dtype="float32")
    assert rate == SAMPLE_RATE
    stream = np.concatenate([audio, audio])  # 60 s
    block = SAMPLE_RATE // 10
    diarizer = build_diarizer(EmbeddedBackend(), latency=2.0, batch_size=1)
    stitcher = diarizer.stitcher
    window, step = diarizer.window_duration, diarizer.window_step
    held_limit = (window + stitcher.latency) / step + diarizer.batch_size + 2
    # A turn is final `latency` s after the pause that ends it (shorter than a window), and the
    # source runs ahead of inference by the windows queued in between.
    lag_limit = (
        stitcher.latency + window + (diarizer.queue_windows + 2) * step + block / SAMPLE_RATE
    )

    pulled = 0  # samples taken from the source so far
    held: list[int] = []  # stitcher.held_windows, sampled as blocks and turns go by
    emitted: list[tuple[Turn, float]] = []  # each turn, with the seconds pulled when it came out

    async def counted(blocks: AsyncIterator[np.ndarray]) -> AsyncIterator[np.ndarray]:
        nonlocal pulled
        async for samples in blocks:
            held.append(stitcher.held_windows)
            pulled += len(samples)
            yield samples

    def on_turn(turn: Turn) -> None:
        held.append(stitcher.held_windows)
        emitted.append((turn, pulled / SAMPLE_RATE))

    asyncio.run(diarizer.run(counted(array_blocks(stream, block)), on_turn))

    assert pulled == len(stream) and emitted
    total = len(stream) / SAMPLE_RATE
    lag = max(when - turn.end for turn, when in emitted)
    print(
        f"\nfirst turn out after {emitted[0][1]:.1f} s of {total:.0f} s; largest lag {lag:.1f} s "
        f"(limit {lag_limit:.1f} s); up to {max(held)} windows held (limit {held_limit:.0f})"
    )
    assert emitted[0][1] < total, "the first turn waited for the end of the source"
    assert lag <= lag_limit
    by_speaker: dict[str, list[Turn]] = defaultdict(list)
    for turn, _ in emitted:
        by_speaker[turn.speaker].append(turn)
    for speaker, turns in by_speaker.items():
        for previous, turn in zip(turns, turns[1:]):
            assert previous.end <= turn.end, f"{speaker}: {turn} came out after {previous}"
            assert previous.end <= turn.start, f"{speaker}: {turn} overlaps {previous}"
    assert max(held) <= held_limit


class RecordingBackend:
    """The embedded backend, recording the batches it is given and what it is told of them."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        self._backend = backend
        self.batches: list[tuple[int, int | None]] = []  # (windows, step_samples)

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def infer(
        self, waveforms: torch.Tensor, step_samples: int | None = None, streams: Any = None
    ) -> list:
        self.batches.append((len(waveforms), step_samples))
        return self._backend.infer(waveforms, step_samples, streams)


async def trickled(audio: np.ndarray, block: int) -> AsyncIterator[np.ndarray]:
    """Blocks that come slower than the model computes: a live source's timing."""
    for start in range(0, len(audio), block):
        await asyncio.sleep(0.02)
        yield audio[start : start + block]


@pytest.mark.parametrize("whole_batches", [True, False])
def test_file_batches_are_whole_whatever_the_timing(shared_data, whole_batches):
    audio, _ = sf.read(shared_data / "dev" / "sample.wav", dtype="float32", frames=12 * SAMPLE_RATE)
    recording = RecordingBackend(EmbeddedBackend())
    diarizer = build_diarizer(recording, 2.0, batch_size=4, whole_batches=whole_batches)
    asyncio.run(diarizer.run(trickled(audio, SAMPLE_RATE // 20), lambda turn: None))
    sizes = [size for size, _ in recording.batches]
    steps = {step for _, step in recording.batches}
    assert sum(sizes) == diarizer.stats.windows
    if whole_batches:  # consecutive windows, told so
        assert sizes[:-1] == [4] * (len(sizes) - 1) and 1 <= sizes[-1] <= 4
        assert steps == {round(diarizer.window_step * SAMPLE_RATE)}
    else:  # live: the windows waiting, each its own (one at a time while the model keeps up)
        assert sizes.count(1) > len(sizes) // 2 and steps == {None}


class FileWindowedBackend(EmbeddedBackend):
    """The embedded backend with file windows of its own."""

    file_window_duration = 3.0
    file_window_step = 1.0


def test_files_in_batches_take_the_backends_file_windows():
    backend = FileWindowedBackend()
    file = build_diarizer(backend, 2.0, whole_batches=True)
    assert (file.window_duration, file.window_step) == (3.0, 1.0)
    assert file.stitcher.clustering.buffer_size == 30  # 30 s of windows 1 s apart
    # live audio, and a file one window per batch as live audio is diarized, keep live windows
    for live in (
        build_diarizer(backend, 2.0, batch_size=4),
        build_diarizer(backend, 2.0, batch_size=1, whole_batches=True),
    ):
        assert (live.window_duration, live.window_step) == (2.0, 0.4)
    chosen = build_diarizer(backend, 2.0, window=4.0, step=0.5, whole_batches=True)
    assert (chosen.window_duration, chosen.window_step) == (4.0, 0.5)
