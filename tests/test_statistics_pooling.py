"""Statistics pooling of all local speakers at once: what pyannote.audio's StatsPool gives
speaker by speaker, within float rounding."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyannote.audio.models.blocks.pooling import StatsPool

from streamdiar.core.statistics_pooling import weighted_statistics


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 4),
    speakers=st.integers(1, 3),
    channels=st.integers(1, 16),
    frames=st.integers(2, 60),
    weight_frames=st.integers(2, 80),
    offset=st.sampled_from([0.0, 1.0, 30.0]),
    binary=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_weighted_statistics_equal_statspool(
    batch, speakers, channels, frames, weight_frames, offset, binary, seed
):
    """Any shapes, 0/1 or fractional weights, resampled or not, and features whose mean lies
    far from zero against their spread (where a variance from sums would cancel)."""
    generator = torch.Generator().manual_seed(seed)
    features = offset + torch.rand(batch, channels, frames, generator=generator)
    weights = torch.rand(batch, speakers, weight_frames, generator=generator)
    if binary:
        weights = (weights > 0.5).float()
    weights[..., :2] = 1.0  # every speaker holds at least two frames
    expected = StatsPool()(features, weights)  # (batch, speakers, 2 * channels)
    torch.testing.assert_close(weighted_statistics(features, weights), expected, atol=2e-5, rtol=1e-4)


def test_a_speaker_without_weight_pools_to_finite_values():
    """The backend masks such speakers out afterwards; they must not poison the batch."""
    features = torch.rand(2, 4, 10)
    weights = torch.zeros(2, 3, 10)
    weights[:, 0] = 1.0
    pooled = weighted_statistics(features, weights)
    assert torch.isfinite(pooled).all()
    torch.testing.assert_close(pooled[:, 0], StatsPool()(features, weights[:, 0]))
