"""The interface every diarization backend implements for the stitcher."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from streamdiar.core.timing import StageClock
from streamdiar.core.types import LocalSpeakers


class Backend(Protocol):
    """Per-window speaker activity and speaker vectors, computed on one torch device."""

    name: str
    window_duration: float  # default window length (s) for this backend
    window_step: float  # default step (s) between windows
    # defaults for files diarized in batches, where latency does not matter
    file_window_duration: float
    file_window_step: float
    max_local_speakers: int
    speech_threshold: float  # stitcher's threshold on averaged activity
    min_gap: float  # s, the stitcher's: shorter pauses inside one speaker's speech are bridged
    eigen_threshold: float  # the clustering's, for this backend's speaker vectors
    frame_step: float  # seconds between activity frames, the resolution of the timeline
    clock: StageClock  # compute time of "segmentation" and "embedding" so far

    @property
    def device(self) -> torch.device: ...

    def to(self, device: torch.device) -> "Backend":
        """Move the models to `device` and return self."""
        ...

    def infer(
        self,
        waveforms: torch.Tensor,
        step_samples: int | None = None,
        streams: Sequence[object | None] | None = None,
    ) -> list[LocalSpeakers]:
        """One result per window of `waveforms` (batch, samples), 16 kHz, on any device.

        `step_samples` says that the windows are consecutive, starting that many samples
        apart: a backend may then compute what they share once (the campplus backend's CAM++
        trunk), so that a window's result depends on the batch it is in. Without it, each
        window gives the same result in any batch, unless `streams` names the live stream of
        each window (an object that lives as long as the stream, or None for a window of no
        stream; windows of one stream in order): a backend may then reuse what it computed
        for that stream's previous window (the campplus backend's CAM++ head, `live_front`),
        so that a window's result depends on its stream's earlier windows, never on other
        streams.
        """
        ...
