"""The default backend's segmentation-3.0, run without pyannote.audio, against pyannote.audio's
own model of the released checkpoint; the powerset decoding against pyannote.audio's."""

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ["PYANNOTE_METRICS_ENABLED"] = "0"

from pyannote.audio.utils.powerset import Powerset as PyannotePowerset  # noqa: E402

from streamdiar.core.pyannote_models import packaged_segmentation  # noqa: E402
from streamdiar.core.segmentation import (  # noqa: E402
    PackagedSegmentation,
    Powerset,
    PowersetLayout,
)


@pytest.fixture(scope="module")
def models() -> tuple[PackagedSegmentation, torch.nn.Module]:
    """The packaged network and pyannote.audio's model of the released checkpoint."""
    return PackagedSegmentation.load(), packaged_segmentation()


@torch.inference_mode()
@pytest.mark.parametrize("seconds", [2.0, 8.0, 10.0])
def test_packaged_network_equals_pyannote_audio_s_model(models, seconds):
    packaged, reference = models
    samples = round(seconds * 16_000)
    waveforms = 0.1 * torch.randn(3, 1, samples, generator=torch.Generator().manual_seed(1))
    waveforms[1] = 0.0  # silence, where the instance norms divide by almost nothing
    expected = reference(waveforms)  # (batch, frames, classes)
    assert expected.shape == (3, reference.num_frames(samples), 7)
    assert torch.equal(packaged(waveforms), expected)


def test_packaged_network_has_the_checkpoint_s_weights_and_layout(models):
    packaged, reference = models
    weights = reference.state_dict()
    network = packaged.network.state_dict()
    assert network.keys() == weights.keys()
    assert all(torch.equal(network[name], weights[name]) for name in weights)
    assert packaged.layout == PowersetLayout.of(reference) == PowersetLayout(3, 2, 270 / 16_000)


@settings(max_examples=50)
@given(
    speakers=st.integers(1, 4),
    simultaneous=st.integers(1, 3),
    frames=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_powerset_decoding_equals_pyannote_audio_s(speakers, simultaneous, frames, seed):
    simultaneous = min(simultaneous, speakers)
    reference = PyannotePowerset(speakers, simultaneous)
    ours = Powerset(speakers, simultaneous)
    assert torch.equal(ours.mapping, reference.mapping)
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, frames, reference.num_powerset_classes, generator=generator)
    log_probabilities = logits.log_softmax(dim=-1)
    assert torch.equal(ours(log_probabilities), reference.to_multilabel(log_probabilities))


def test_the_default_backend_loads_without_pyannote_audio():
    """pyannote.audio imports Lightning, torchmetrics and torch's compiler: seconds of every
    start that the default backend does not need."""
    script = (
        "import sys\n"
        "from streamdiar.session import load_backend\n"
        "backend, _ = load_backend('campplus', 'cpu')\n"
        "backend.infer(__import__('torch').zeros(1, 16000))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'torchmetrics'}),"
        " 'pyannote.audio' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "[] False"
