"""On CPU, a stream's live windows run CAM++ beside the segmentation (`CampplusBackend.
local_speakers`): the same vectors as CAM++ after it, its front kept for every window."""

import threading

import numpy as np
import pytest
import soundfile as sf
import torch

from streamdiar.core.campplus_backend import CampplusBackend

STEP = 8_000  # samples, 0.5 s
WINDOW = 128_000  # samples, 8 s


class Stream:
    """A live stream, as the backend sees one: any object that lives as long as it does."""


@pytest.fixture(scope="module")
def backend(campplus_backend) -> CampplusBackend:
    return campplus_backend("onnx")


@pytest.fixture(scope="module")
def speech_pause_speech(shared_data) -> list[torch.Tensor]:
    """Live windows (1, samples) of 12 s of dev00, 9 s of digital silence, and 12 s more: the
    windows inside the silence have no speech, and the ones after it follow windows without."""
    audio, _ = sf.read(shared_data / "dev" / "dev00.wav", dtype="float32")
    twelve = 12 * 16_000
    silence = np.zeros(9 * 16_000, dtype=np.float32)
    stream = np.concatenate([audio[:twelve], silence, audio[twelve : 2 * twelve]])
    count = (len(stream) - WINDOW) // STEP + 1
    return [torch.from_numpy(stream[i * STEP : i * STEP + WINDOW])[None] for i in range(count)]


def test_vectors_equal_cam_after_the_segmentation(backend, speech_pause_speech):
    """Window by window, through speech, silence and speech again (so that the body runs both
    before the segmentation has spoken and after it): the activity and vectors of CAM++ run
    beside the segmentation equal those of the segmentation, then CAM++'s front and body on
    the same stream's windows in turn."""
    beside, after = Stream(), Stream()
    silent = 0
    for window in speech_pause_speech:
        result = backend.infer(window, streams=[beside])[0]
        waveforms = window[:, None]  # (1, 1, samples)
        with torch.inference_mode():
            activity = backend.activity(waveforms)  # (1, frames, K)
            compiled = backend.compiled_models(shared=False)
            head = backend.live_front.head_frames(waveforms, [after], compiled.head)
            frames = compiled.body(head)  # (1, channels, frames)
            speech = (activity.amax(dim=1) > 0).any(dim=1)  # (1,)
            expected = backend.pooled_embeddings(
                frames[speech] if speech.any() else None, activity, WINDOW
            )[0].numpy()
        np.testing.assert_array_equal(result.activity, activity[0].numpy())
        np.testing.assert_allclose(result.embeddings, expected, atol=1e-5)
        silent += not speech.any()
    assert silent >= 2


def test_cam_starts_before_the_segmentation_ends(backend, speech_pause_speech, monkeypatch):
    """The segmentation of a live window waits until CAM++ has started on it: run one after
    the other, it would wait forever."""
    started = threading.Event()
    live_trunk, activity = backend._live_trunk, backend.activity

    def starting_trunk(*args, **kwargs):
        started.set()
        return live_trunk(*args, **kwargs)

    def waiting_activity(waveforms: torch.Tensor) -> torch.Tensor:
        assert started.wait(timeout=60), "the segmentation ran before CAM++ started"
        return activity(waveforms)

    monkeypatch.setattr(backend, "_live_trunk", starting_trunk)
    monkeypatch.setattr(backend, "activity", waiting_activity)
    result = backend.infer(speech_pause_speech[0], streams=[Stream()])[0]
    assert result.active.any()
