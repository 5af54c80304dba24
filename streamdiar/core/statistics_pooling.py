"""Weighted statistics pooling of all local speakers at once.

pyannote.audio's `StatsPool` pools one speaker at a time, in about ten passes over the frame
features each; for a file's batch of 16 windows of CAM++'s 512 channels that cost a sixth of
the batch. Two batched matrix products give every speaker's weighted sums at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_statistics(frames: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each speaker's weighted mean and unbiased standard deviation (batch, speakers, 2 *
    channels) of frame features (batch, channels, frames), under weights (batch, speakers,
    any number of frames, resampled to the features' by nearest neighbour): what
    `StatsPool` computes. The variance is the mean square less the squared mean, which
    cancels where a speaker's few frames lie far from the window's mean: the sums are taken
    in float64, on features centred on their own mean (which moves neither statistic)."""
    if weights.shape[-1] != frames.shape[-1]:
        weights = F.interpolate(weights, size=frames.shape[-1], mode="nearest")
    weights = weights.double()
    centre = frames.double().mean(dim=2, keepdim=True)  # (batch, channels, 1)
    centred = (frames.double() - centre).transpose(1, 2)  # (batch, frames, channels)
    total = weights.sum(dim=2, keepdim=True)  # (batch, speakers, 1)
    sums = torch.bmm(weights, centred)  # (batch, speakers, channels)
    squares = torch.bmm(weights, centred.square())  # (batch, speakers, channels)
    # the weighted sum of squared deviations from the speaker's mean: 0 for a single frame
    deviations = (squares - sums.square() / total.clamp(min=1e-8)).clamp(min=0)
    smoothed = total + 1e-8  # StatsPool's, which keeps a silent speaker finite
    variance = deviations / (smoothed - weights.square().sum(dim=2, keepdim=True) / smoothed + 1e-8)
    mean = sums / smoothed + centre.transpose(1, 2)
    statistics = torch.cat([mean, variance.sqrt()], dim=-1)
    return statistics.to(frames.dtype)
