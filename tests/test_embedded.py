"""The embedded backend's torch modules against the packages they come from."""

import numpy as np
import pytest
import soundfile as sf
import torch
from resemblyzer import audio as resemblyzer_audio
from silero_vad import load_silero_vad

from streamdiar.core.silero import SileroVad


@pytest.fixture(scope="module")
def speech(shared_data) -> np.ndarray:
    samples, rate = sf.read(shared_data / "dev" / "sample.wav", dtype="float32")
    assert rate == 16_000
    return samples[8 * rate : 18 * rate]  # (160000,) ten seconds of the call


def test_batched_silero_equals_the_packaged_model(speech):
    packaged = load_silero_vad().audio_forward(torch.from_numpy(speech)[None], 16_000)[0]
    with torch.inference_mode():
        batched = SileroVad.pretrained()(torch.from_numpy(np.stack([speech, speech])))
    assert batched.shape == (2, len(packaged))
    assert torch.allclose(batched[0], packaged, atol=1e-4)
    assert torch.allclose(batched[0], batched[1], atol=1e-6)  # rows of a batch are independent


def test_mel_features_equal_resemblyzer(speech, backend):
    window = speech[:32_000]
    expected = resemblyzer_audio.wav_to_mel_spectrogram(window)  # (frames, 40)
    mel = backend.mel(torch.from_numpy(window)).T.numpy()
    assert mel.shape == expected.shape
    assert np.abs(mel - expected).max() <= 1e-4 * np.abs(expected).max()


def test_speaker_vector_is_the_encoders_on_the_speech_frames(speech, backend):
    window = torch.from_numpy(speech[:32_000])[None]  # (1, samples): speech throughout
    is_speech = torch.ones(1, 63, dtype=torch.bool)  # every 32 ms VAD frame
    vectors, active = backend._embed(window, is_speech)
    assert active.tolist() == [[True]]
    mel = backend.mel(window).transpose(1, 2)
    power = window.pow(2).mean()
    mel = mel * (10 ** (-30 / 10) / power).clamp(min=1.0)
    expected = backend.encoder(mel)
    assert torch.allclose(vectors[0], expected, atol=1e-5)


def test_windows_with_too_little_speech_get_no_vector(backend):
    silence = torch.zeros(2, 32_000)
    results = backend.infer(silence)
    assert [r.active.tolist() for r in results] == [[False], [False]]
    assert all(r.activity.shape == (63, 1) for r in results)
