"""Small value types shared by the core and the stream layers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Window:
    """A fixed-length slice of the stream; the tail of the last one is zero padding."""

    index: int
    start: float  # seconds from the start of the stream
    samples: np.ndarray  # (num_samples,) float32, mono, SAMPLE_RATE
    valid: int  # number of real (not padded) samples at the front

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def valid_end(self) -> float:
        """End time (s) of the real audio held by this window."""
        return self.start + self.valid / SAMPLE_RATE


@dataclass(frozen=True)
class LocalSpeakers:
    """What a backend found in one window.

    `activity[f, k]` is the probability that local speaker k talks in frame f, frames spaced
    `frame_step` seconds from the window start. `embeddings[k]` is that speaker's vector; only
    rows where `active[k]` is true carry meaning.
    """

    activity: np.ndarray  # (frames, K) float32 in [0, 1]
    embeddings: np.ndarray  # (K, dim) float32
    active: np.ndarray  # (K,) bool
    frame_step: float  # seconds between frames


@dataclass(frozen=True)
class Turn:
    """A committed stretch of speech by one speaker."""

    start: float  # seconds
    end: float  # seconds
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start
