"""Fault injection: an accelerator that fails mid-stream must cost a warning, never the run
or a window of it. The "accelerator" is a wrapper around the real CPU backend that claims to
be on CUDA and raises the errors CUDA raises, on chosen batches."""

import asyncio
import errno
import io
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from streamdiar.core.embedded import EmbeddedBackend
from streamdiar.core.types import SAMPLE_RATE, LocalSpeakers, Turn
from streamdiar.session import place_on_device, build_diarizer
from streamdiar.stream.pipeline import PipelineStats
from streamdiar.stream.sinks import OutputWriteError, RttmWriter
from streamdiar.stream.sources import array_blocks

SECONDS = 14.0  # of sample.wav: its first turns start near 7.6 s
BATCH = 4

# (call number, windows in the batch) -> the error that call raises, or None
Fault = Callable[[int, int], Exception | None]


def cuda_error() -> RuntimeError:
    return RuntimeError(
        "CUDA error: an illegal memory access was encountered\n"
        "CUDA kernel errors might be asynchronously reported at some other API call"
    )


def out_of_memory() -> RuntimeError:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


class FlakyAccelerator:
    """The wrapped backend, claiming to run on CUDA until moved, failing where `fault` says.

    The work itself always runs on the wrapped CPU backend, so a run that falls back must give
    exactly what a CPU-only run gives."""

    def __init__(self, inner: EmbeddedBackend, fault: Fault) -> None:
        self.inner = inner
        self.fault = fault
        self._device = torch.device("cuda")
        self.calls: list[tuple[str, int, bool]] = []  # (device, windows, succeeded) per call

    def __getattr__(self, name: str):
        return getattr(self.inner, name)  # window_duration, frame_step...

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: torch.device) -> "FlakyAccelerator":
        self._device = device
        return self

    def infer(
        self,
        waveforms: torch.Tensor,
        step_samples: int | None = None,
        streams: Sequence[object | None] | None = None,
    ) -> list[LocalSpeakers]:
        error = self.fault(len(self.calls) + 1, len(waveforms)) if self._device.type != "cpu" else None
        self.calls.append((self._device.type, len(waveforms), error is None))
        if error is not None:
            raise error
        return self.inner.infer(waveforms, step_samples, streams)


@pytest.fixture(scope="module")
def audio(shared_data) -> np.ndarray:
    samples, rate = sf.read(shared_data / "dev" / "sample.wav", dtype="float32")
    assert rate == SAMPLE_RATE
    return samples[: int(SECONDS * SAMPLE_RATE)]  # (samples,)


def diarize(backend, audio: np.ndarray) -> tuple[list[tuple[float, float, str]], PipelineStats, list[str]]:
    """Turns, stats and warnings of one streaming run of `audio` in 0.1 s blocks."""
    diarizer = build_diarizer(backend, latency=2.0, batch_size=BATCH)
    turns: list[Turn] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stats = asyncio.run(diarizer.run(array_blocks(audio, SAMPLE_RATE // 10), turns.append))
    return [(t.start, t.end, t.speaker) for t in turns], stats, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def cpu_only(backend, audio):
    turns, stats, caught = diarize(backend, audio)
    assert turns and caught == [] and stats.fallbacks == []
    return turns, stats.windows


def test_cuda_error_on_the_nth_batch_continues_on_cpu_from_that_batch(backend, audio, cpu_only):
    expected, windows = cpu_only
    flaky = FlakyAccelerator(backend, lambda call, size: cuda_error() if call == 3 else None)
    turns, stats, caught = diarize(flaky, audio)
    assert turns == expected
    assert stats.windows == windows
    assert caught == stats.fallbacks
    assert caught == ["cuda failed (CUDA error: an illegal memory access was encountered); continuing on CPU"]
    assert flaky.device.type == "cpu"
    devices = [device for device, _, _ in flaky.calls]
    assert devices[:3] == ["cuda"] * 3 and set(devices[3:]) == {"cpu"}
    # the failed batch is run again on CPU, whole: no window lost, none run twice
    assert flaky.calls[2][2] is False and flaky.calls[3][1] == flaky.calls[2][1]
    assert sum(size for _, size, ok in flaky.calls if ok) == windows


def test_out_of_memory_halves_the_batch_then_moves_to_cpu(backend, audio, cpu_only):
    expected, windows = cpu_only

    def fault(call: int, size: int) -> Exception | None:
        # from the second batch on, the card holds two windows, then none at all
        if call < 2:
            return None
        if call < 8:
            return out_of_memory() if size > 2 else None
        return out_of_memory()

    flaky = FlakyAccelerator(backend, fault)
    turns, stats, caught = diarize(flaky, audio)
    assert turns == expected
    assert stats.windows == windows
    assert caught == stats.fallbacks
    assert caught[0] == "cuda ran out of memory; batches of 2 windows from now"
    assert caught[-1] == "cuda failed (CUDA out of memory. Tried to allocate 2.00 GiB); continuing on CPU"
    cuda_sizes = [size for device, size, ok in flaky.calls if device == "cuda" and ok]
    assert cuda_sizes[0] == flaky.calls[0][1] and max(cuda_sizes[1:]) <= 2
    assert flaky.device.type == "cpu"
    assert sum(size for _, size, ok in flaky.calls if ok) == windows


def test_an_error_on_cpu_is_not_retried(backend, audio):
    calls = []

    class BrokenOnCpu(FlakyAccelerator):
        def infer(
            self,
            waveforms: torch.Tensor,
            step_samples: int | None = None,
            streams: Sequence[object | None] | None = None,
        ) -> list[LocalSpeakers]:
            calls.append(len(waveforms))
            raise RuntimeError("a real bug")

    broken = BrokenOnCpu(backend, lambda call, size: None).to(torch.device("cpu"))
    diarizer = build_diarizer(broken, latency=2.0, batch_size=BATCH)
    with pytest.raises(RuntimeError, match="a real bug"):
        asyncio.run(diarizer.run(array_blocks(audio, SAMPLE_RATE // 10), lambda turn: None))
    assert len(calls) == 1


class FillsUp(io.FileIO):
    """A file on a disk with room for `room` more bytes: writes past it are cut short."""

    def __init__(self, path: Path, room: int) -> None:
        super().__init__(path, "w")
        self.room = room

    def write(self, data: bytes) -> int:
        if not self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        kept = bytes(data)[: self.room]
        self.room -= len(kept)
        return super().write(kept)


@pytest.mark.parametrize("room", [0, 1, 70, 150, 300])
def test_a_full_disk_stops_the_rttm_on_a_whole_line(tmp_path, room):
    path = tmp_path / "out.rttm"
    writer = RttmWriter(path)
    writer._file.close()
    writer._file = FillsUp(path, room)
    turns = [Turn(float(i), i + 0.5, f"SPEAKER_0{i % 2}") for i in range(10)]
    written = 0
    with pytest.raises(OutputWriteError, match="No space left on device") as error:
        for turn in turns:
            writer.write("meeting", turn)
            written += 1
    writer.close()
    assert f"keeps the {written} turns" in str(error.value)
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == written and all(line.endswith(" <NA> <NA>\n") for line in lines)
    assert [(t.start, t.duration, t.speaker) for t in turns[:written]] == [
        (float(f[3]), float(f[4]), f[7]) for f in (line.split() for line in lines)
    ]


def test_an_accelerator_that_fails_at_load_leaves_the_run_on_cpu(backend):
    flaky = FlakyAccelerator(backend, lambda call, windows: cuda_error())
    loaded, warning = place_on_device(flaky, torch.device("cuda"), None)
    assert loaded.device.type == "cpu"
    assert warning.startswith("cuda failed at load (CUDA error: an illegal memory access")
    assert "\n" not in warning


def test_a_working_accelerator_is_kept(backend):
    flaky = FlakyAccelerator(backend, lambda call, windows: None)
    loaded, warning = place_on_device(flaky, torch.device("cuda"), None)
    assert (loaded.device.type, warning) == ("cuda", None)
