"""The pyannote backend: segmentation-3.0 gives up to 3 overlapping local speakers per window,
the WeSpeaker ResNet34 one vector per active local speaker.

The ResNet trunk runs once per live window, and once per 16 consecutive windows of a file
(`shared_trunk`); only its statistics pooling runs per local speaker, with that speaker's
activity as weights. pyannote.audio's pipeline and diart run the whole encoder once per
(window, speaker) instead, which is most of their compute.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import nn

from streamdiar.core.cuda_graphs import CudaGraphed
from streamdiar.core.segmentation import Powerset, PowersetLayout
from streamdiar.core.shared_trunk import consecutive_window_frames
from streamdiar.core.timing import StageClock
from streamdiar.core.types import LocalSpeakers


class FrameEncoder(Protocol):
    """A speaker encoder whose trunk runs once per window and whose pooling runs once per
    local speaker: pyannote.audio's WeSpeaker ResNet, or CAM++ (`CampplusEncoder`)."""

    dimension: int

    def forward_frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Frame features (batch, ...) of waveforms (batch, 1, samples)."""
        ...

    def forward_embedding(self, frames: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(batch, speakers, dimension) from frame features and weights (batch, speakers, f)."""
        ...

    def num_frames(self, num_samples: int) -> int:
        """Frame features of a waveform of `num_samples` samples."""
        ...

    def eval(self) -> "FrameEncoder": ...

    def to(self, device: torch.device) -> "FrameEncoder": ...


# The smallest input (samples) the WeSpeaker ResNet34 pools over, as pyannote.audio finds it
# (PretrainedSpeakerEmbedding.min_num_samples): shorter overlap-free speech uses all of it.
EMBEDDING_MIN_SAMPLES = 400


class PyannoteBackend:
    """segmentation-3.0 + WeSpeaker ResNet34 on one torch device.

    Windows are 5 s with a 0.5 s step, diart's live setting: segmentation-3.0 was trained on
    10 s chunks, but its SincNet + BiLSTM takes any length, and 5 s halves the latency a
    window adds and the audio the ResNet sees per step. Activity is pyannote's hard
    powerset-to-multilabel conversion, so overlapped frames keep both speakers.

    On CUDA, the segmentation replays CUDA graphs (`cuda_graphs`) unless `cuda_graphs` is
    False (the campplus backend's CAM++ too).

    `segmentation`: a pyannote.audio powerset segmentation model, or the packaged network
    (`PackagedSegmentation`), which the campplus backend runs.
    """

    name = "pyannote"
    window_duration = 5.0
    window_step = 0.5
    file_window_duration, file_window_step = window_duration, window_step  # files: the same
    eigen_threshold = 0.2  # for the clustering, in WeSpeaker's cosine space
    speech_threshold = 0.5  # on the 0/1 activity averaged over overlapping windows
    # segmentation-3.0 marks pauses itself, frame by frame: bridging them only adds false alarm
    # (with the true speakers given, dev-set DER 24.5 % bridging 1 s pauses, 23.2 % with none)
    min_gap = 0.0
    max_local_speakers = 3

    def __init__(
        self,
        segmentation: nn.Module,
        embedding: FrameEncoder,
        random_weights: bool = False,
        cuda_graphs: bool = True,
    ) -> None:
        self.segmentation = segmentation.eval()
        self.embedding = embedding.eval()
        layout = PowersetLayout.of(segmentation)
        self.powerset = Powerset(layout.local_speakers, layout.max_simultaneous)
        self.max_local_speakers = layout.local_speakers
        self.frame_step = layout.frame_step
        self._device = torch.device("cpu")
        self.clock = StageClock()
        self.cuda_graphs = cuda_graphs
        self._graphed: dict[str, CudaGraphed] = {}  # by name, for the device the models are on
        if random_weights:
            warnings.warn(
                "the pyannote models have random weights: speaker labels and times mean "
                "nothing (for tests and speed measurements only)",
                stacklevel=2,
            )

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: torch.device) -> "PyannoteBackend":
        for module in (self.segmentation, self.embedding, self.powerset):
            module.to(device)
        self._device = device
        self._graphed = {}
        return self

    @torch.inference_mode()
    def infer(
        self,
        waveforms: torch.Tensor,
        step_samples: int | None = None,
        streams: Sequence[object | None] | None = None,
    ) -> list[LocalSpeakers]:
        waveforms = waveforms.to(self._device, torch.float32).unsqueeze(1)  # (batch, 1, samples)
        with self.clock.stage("model", self._device):
            activity, embeddings, active = self.local_speakers(waveforms, step_samples, streams)
        activity = activity.cpu().numpy()
        embeddings = embeddings.cpu().numpy()  # (batch, K, dim)
        active = active.cpu().numpy()  # (batch, K)
        return [
            LocalSpeakers(activity[i], embeddings[i], active[i], self.frame_step)
            for i in range(len(activity))
        ]

    def local_speakers(
        self,
        waveforms: torch.Tensor,
        step_samples: int | None,
        streams: Sequence[object | None] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Activity (batch, frames, K), vectors (batch, K, dim) and which local speakers are
        active (batch, K) of waveforms (batch, 1, samples), as `infer`: the segmentation, then
        the encoder on the windows with speech, `streams` aside."""
        with self.clock.stage("segmentation", self._device):
            activity = self.activity(waveforms, shared=step_samples is not None)
        with self.clock.stage("embedding", self._device):
            embeddings, active = self.speaker_embeddings(waveforms, activity, step_samples)
        return activity, embeddings, active

    def activity(self, waveforms: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """Per-speaker 0/1 activity (batch, frames, K) of waveforms (batch, 1, samples);
        `shared`: they are a file's consecutive windows (`segmentation_runner`)."""
        # (batch, frames, powerset classes)
        log_probabilities = self.segmentation_runner(shared)(waveforms)
        return self.powerset(log_probabilities)

    def segmentation_runner(self, shared: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        """What runs the segmentation model on a batch of live windows, or of a file's
        consecutive windows (`shared`): the model itself here; the campplus backend runs
        compiled copies on CPU, chosen per mode."""
        return self.on_graphs("segmentation", lambda: self.segmentation)

    def frames_runner(self, shared: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        """What computes the encoder's frame features (`forward_frames`), per mode as
        `segmentation_runner`. WeSpeaker's runs eagerly: pyannote.audio computes its
        filterbank with torchaudio's Kaldi functions, which build the mel banks on the CPU and
        copy them to the device at each call, and a CUDA graph cannot hold such a copy."""
        return self.embedding.forward_frames

    @property
    def cuda_graph_shapes(self) -> dict[str, list]:
        """The input shapes (and dtypes) each model replays from CUDA graphs, by name; empty
        where none has been captured since the models moved."""
        return {name: graphed.shapes for name, graphed in self._graphed.items() if graphed.shapes}

    def on_graphs(
        self, name: str, build: Callable[[], Callable[[torch.Tensor], torch.Tensor]]
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """On CUDA, the function `build` returns, replayed from CUDA graphs (`cuda_graphs`):
        built once per `name` until the models move. Elsewhere, or without `cuda_graphs`,
        that function itself, built at each call."""
        if self._device.type != "cuda" or not self.cuda_graphs:
            return build()
        if name not in self._graphed:
            self._graphed[name] = CudaGraphed(build(), name)
        return self._graphed[name]

    def speaker_embeddings(
        self,
        waveforms: torch.Tensor,
        activity: torch.Tensor,
        step_samples: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One vector per local speaker (batch, K, dim), zero where inactive, and which local
        speakers are active (batch, K), from the trunk's frame features of the windows with
        speech (`window_frames`).

        Each speaker is pooled over the frames where they talk alone, or over all their frames
        when too few are overlap-free (pyannote's `embedding_exclude_overlap`).
        """
        active = activity.amax(dim=1) > 0  # (batch, K)
        speech = active.any(dim=1)  # (batch,)
        frames = self.window_frames(waveforms, speech, step_samples) if speech.any() else None
        return self.pooled_embeddings(frames, activity, waveforms.shape[-1]), active

    def pooled_embeddings(
        self, frames: torch.Tensor | None, activity: torch.Tensor, num_samples: int
    ) -> torch.Tensor:
        """One vector per local speaker (batch, K, dim), zero where inactive, from 0/1 activity
        (batch, frames, K) and the encoder's frame features (n, ..., frames) of the n windows
        with speech (None where there are none)."""
        active = activity.amax(dim=1) > 0  # (batch, K)
        speech = active.any(dim=1)  # (batch,)
        embeddings = torch.zeros(*active.shape, self.embedding.dimension, device=activity.device)
        if frames is not None:
            weights = self.overlap_aware_weights(activity[speech], num_samples)
            pooled = self.embedding.forward_embedding(frames, weights)  # (n, K, dim)
            # an inactive speaker's zero weights pool to NaN
            embeddings[speech] = torch.where(active[speech].unsqueeze(-1), pooled, 0.0)
        return embeddings

    def window_frames(
        self, waveforms: torch.Tensor, speech: torch.Tensor, step_samples: int | None
    ) -> torch.Tensor:
        """The encoder's frame features (n, ..., frames) of the n windows with speech
        (`speech`, a mask over the batch): one trunk pass per window, or, for consecutive
        windows `step_samples` apart, one per WINDOWS_PER_PASS of them (`shared_trunk`)."""
        if step_samples is None:
            return self.frames_runner(shared=False)(waveforms[speech])
        frames = consecutive_window_frames(
            self.frames_runner(shared=True),
            waveforms,
            step_samples,
            self.trunk_frame_samples,
            self.embedding.num_frames(waveforms.shape[-1]),
        )
        return frames[speech]

    @property
    def trunk_frame_samples(self) -> int:
        """Samples between two of the encoder's frame features (1280 for the WeSpeaker
        ResNet34: fbank every 160 samples, then three strides of 2)."""
        centers = self.embedding.receptive_field_center  # of a frame, in samples
        return centers(1) - centers(0)

    @staticmethod
    def overlap_aware_weights(activity: torch.Tensor, num_samples: int) -> torch.Tensor:
        """Pooling weights (batch, K, frames) from 0/1 activity (batch, frames, K)."""
        num_frames = activity.shape[1]
        min_frames = math.ceil(num_frames * EMBEDDING_MIN_SAMPLES / num_samples)
        alone = activity * (activity.sum(dim=2, keepdim=True) < 2)  # (batch, frames, K)
        enough = alone.sum(dim=1, keepdim=True) > min_frames  # (batch, 1, K)
        return torch.where(enough, alone, activity).transpose(1, 2)

