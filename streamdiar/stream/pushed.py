"""Blocks of samples as an application holds them (int16 or float samples at any rate, mono or
with channels), checked and converted to the pipeline's float32 mono at SAMPLE_RATE."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import numpy as np
from numpy.typing import ArrayLike

from streamdiar.settings import check_stream_format
from streamdiar.stream.sources import AudioError, MonoResampler, NonFiniteCounter

# int16 samples are scaled as libsndfile reads 16-bit PCM as float: by 1/32768, so that pushed
# int16 samples and the same file decoded give the same audio
INT16_SCALE = 1 / 32768
FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))


class BlockConverter:
    """Converts the blocks of one stream, in order, to (samples,) float32 mono at SAMPLE_RATE.

    A block holds int16 or float32 samples (float64 is taken too) at `sample_rate`: (frames,)
    for mono, (frames, channels), or (frames * channels,) interleaved. Resampling keeps its
    state across blocks, so blocks of any lengths give the audio one block would. NaN and Inf
    samples become 0, with one warning at the end.
    """

    def __init__(self, sample_rate: int, channels: int) -> None:
        check_stream_format(sample_rate, channels)
        self.sample_rate = sample_rate
        self.channels = channels
        self._to_mono = MonoResampler(sample_rate)
        self._non_finite = NonFiniteCounter()

    def __call__(self, samples: ArrayLike) -> np.ndarray:
        return self._to_mono(self._non_finite.clean(self._frames(np.asarray(samples))))

    def finish(self) -> np.ndarray:
        """The last samples the resampler held back, at the end of the stream."""
        self._non_finite.warn("pushed audio")
        return self._to_mono(np.zeros((0, self.channels), np.float32), last=True)

    def _frames(self, samples: np.ndarray) -> np.ndarray:
        """(frames, channels) float32 of one block."""
        if samples.dtype == np.int16:
            samples = samples.astype(np.float32) * np.float32(INT16_SCALE)
        elif samples.dtype in FLOAT_TYPES:
            samples = samples.astype(np.float32, copy=False)
        else:
            raise AudioError(f"samples must be int16 or float32, got {samples.dtype}")
        if samples.ndim == 2 and samples.shape[1] == self.channels:
            return samples
        if samples.ndim == 1 and len(samples) % self.channels == 0:
            return samples.reshape(-1, self.channels)
        if self.channels == 1:
            expected = "(frames,) or (frames, 1)"
        else:
            expected = f"(frames, {self.channels}) or interleaved (frames * {self.channels},)"
        raise AudioError(
            f"a block of shape {samples.shape} does not hold {self.channels} channel"
            f"{'' if self.channels == 1 else 's'}: expected {expected}"
        )


async def converted_blocks(
    blocks: AsyncIterable[ArrayLike], convert: BlockConverter
) -> AsyncIterator[np.ndarray]:
    """An application's async stream of blocks as the pipeline's blocks."""
    async for block in blocks:
        yield convert(block)
    yield convert.finish()
