"""Where torch runs CAM++'s trunk (CUDA by default), it may run in float16
($STREAMDIAR_PRECISION): vectors within a cosine distance of 1e-4 of float32's, the
segmentation untouched. Checked here on CPU, under the same autocast CUDA uses."""

import numpy as np
import pytest
import soundfile as sf
import torch

from streamdiar.core.campplus_backend import CampplusBackend

STEP = 8_000  # samples, 0.5 s
WINDOW = 128_000  # samples, 8 s


@pytest.fixture(scope="module")
def backend(campplus_backend) -> CampplusBackend:
    return campplus_backend("torch")


def test_float16_vectors_stay_within_1e_4_of_float32(backend, shared_data, speaker_cosines):
    """Six windows of dev00, two people speaking, in file mode (CAM++'s trunk shared by the
    consecutive windows) and one at a time. Measured: cosine 0.99999 at least, the activity
    the same (the segmentation runs in float32 either way)."""
    audio, _ = sf.read(shared_data / "dev" / "dev00.wav", dtype="float32")
    windows = torch.stack([torch.from_numpy(audio[i * STEP : i * STEP + WINDOW]) for i in range(6)])
    results = {}
    for precision in ("float32", "float16"):
        backend.precision = precision
        results[precision] = (backend.infer(windows, STEP), backend.infer(windows[:2]))
    for float16, float32 in zip(results["float16"], results["float32"]):
        for half, full in zip(float16, float32):
            np.testing.assert_array_equal(half.activity, full.activity)
        cosines = speaker_cosines(float16, float32)
        assert len(cosines) >= len(float16)
        assert cosines.min() >= 1 - 1e-4
        # float16 did run: rounding moved the vectors
        assert not all(np.array_equal(h.embeddings, f.embeddings) for h, f in zip(float16, float32))


@pytest.mark.parametrize(
    ("precision", "device", "float16"),
    [
        ("auto", "cuda", True),
        ("auto", "mps", False),
        ("auto", "cpu", False),
        ("float32", "cuda", False),
        ("float16", "cpu", True),
    ],
)
def test_auto_is_float16_on_cuda_only(backend, monkeypatch, precision, device, float16):
    monkeypatch.setattr(backend, "precision", precision)
    monkeypatch.setattr(backend, "_device", torch.device(device))
    assert backend.float16_trunk is float16
