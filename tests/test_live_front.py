"""Live windows share CAM++'s filterbank and head with the windows they continue
(`live_front`): exact where the window's mean does not matter, and close to one pass per
window where it does."""

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.nn import functional as F

from streamdiar.core.campplus_backend import CampplusBackend
from streamdiar.core.fbank import KaldiFbank
from streamdiar.core.live_front import LiveFront

STEP = 8_000  # samples, 0.5 s
WINDOW = 128_000  # samples, 8 s


def time_difference(features: torch.Tensor) -> torch.Tensor:
    """A head blind to the mean (frame t+1 minus frame t-1, zero beyond the input), with the
    receptive field of 3 frames: (batch, mels, frames) to the same shape."""
    padded = F.pad(features, (1, 1))
    return padded[..., 2:] - padded[..., :-2]


def windows_of(audio: np.ndarray, count: int) -> list[torch.Tensor]:
    """The first `count` live windows of `audio`, each (1, 1, samples)."""
    return [
        torch.from_numpy(audio[i * STEP : i * STEP + WINDOW]).view(1, 1, -1) for i in range(count)
    ]


@pytest.fixture(scope="module")
def dev00(shared_data) -> np.ndarray:
    audio, _ = sf.read(shared_data / "dev" / "dev00.wav", dtype="float32")
    return audio


class Stream:
    """A live stream, as the backend sees one: any object that lives as long as it does."""


def test_shared_frames_equal_whole_windows_where_the_mean_does_not_matter(dev00):
    """With a head blind to the mean, each window's frames equal those of a pass over it
    alone, but for its first frame, which now has the audio before it as context."""
    fbank = KaldiFbank()
    front = LiveFront(fbank, STEP)
    stream = Stream()
    for window in windows_of(dev00, 12):
        shared = front.head_frames(window, [stream], time_difference)[0]  # (mels, frames)
        features = fbank(window[:, 0])[0]
        whole = time_difference((features - features.mean(dim=0)).T[None])[0]
        torch.testing.assert_close(shared[:, 1:], whole[:, 1:], atol=1e-4, rtol=1e-5)


def test_windows_that_continue_nothing_are_computed_whole(dev00):
    """A stream's first window, a window after a gap, a window of no stream, and windows of
    two streams merged in one batch: each continues its own stream's latest window, or none."""
    fbank = KaldiFbank()
    front = LiveFront(fbank, STEP)
    calls = []

    def head(features: torch.Tensor) -> torch.Tensor:
        calls.append(features.shape[-1])
        return features

    first, second, third, fourth, _, after_gap = windows_of(dev00, 6)
    other_stream = torch.from_numpy(dev00[-WINDOW:]).view(1, 1, -1)
    stream, other = Stream(), Stream()
    front.head_frames(torch.cat([first, other_stream]), [stream, other], head)
    front.head_frames(second, [stream], head)
    front.head_frames(torch.cat([third, third]), [other, stream], head)
    front.head_frames(fourth, [None], head)
    front.head_frames(after_gap, [stream], head)
    whole, part = 798, 50 + 20 + 10  # fbank frames: a window, and the new ones with margins
    assert calls == [whole, whole, part, whole, part, whole, whole]


def test_a_stream_s_frames_do_not_depend_on_other_streams(dev00):
    """A stream's windows give the same frames alone and interleaved with another stream's,
    even where the other stream's latest window ends in the digital silence that this
    stream's window starts with (the head here returns its input: frames normalised by the
    mean of the window that computed them, which differs between the two)."""
    silence = np.zeros(WINDOW, dtype=np.float32)
    one = np.concatenate([silence, dev00[: 2 * WINDOW]])  # 24 s
    other = np.concatenate([dev00[:STEP], silence, dev00[: 2 * WINDOW - STEP]])
    count = (len(one) - WINDOW) // STEP

    def run(interleaved: bool) -> list[torch.Tensor]:
        front, stream, other_stream = LiveFront(KaldiFbank(), STEP), Stream(), Stream()
        frames = []
        for one_window, other_window in zip(windows_of(one, count), windows_of(other, count)):
            frames.append(front.head_frames(one_window, [stream], lambda features: features))
            if interleaved:
                front.head_frames(other_window, [other_stream], lambda features: features)
        return frames

    for alone, interleaved in zip(run(False), run(True), strict=True):
        assert torch.equal(alone, interleaved)


@pytest.fixture(scope="module")
def backend(campplus_backend) -> CampplusBackend:
    return campplus_backend("onnx")


def test_shared_head_vectors_stay_close_to_one_pass_per_window(backend, dev00, speaker_cosines):
    """The vectors of a live stream's windows, their front shared, against each window
    computed alone: 30 s of dev00, where two people speak. Measured: median
    cosine 0.9966, 5th percentile 0.9925 (the head's input normalised by other windows'
    means), the same activity."""
    stream = Stream()
    shared, alone = [], []
    for window in windows_of(dev00, 45):
        shared.append(backend.infer(window[0], streams=[stream])[0])
        alone.append(backend.infer(window[0])[0])  # a window of no stream: computed whole
    for one, other in zip(shared, alone):
        np.testing.assert_array_equal(one.active, other.active)
    cosines = speaker_cosines(shared, alone)
    print(f"cosine median {np.median(cosines):.5f}, 5th percentile {np.percentile(cosines, 5):.5f}")
    assert len(cosines) > 30
    assert np.median(cosines) >= 0.995
    assert np.percentile(cosines, 5) >= 0.99
