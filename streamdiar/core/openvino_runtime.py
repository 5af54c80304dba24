"""Torch modules run by OpenVINO on the CPU, from the same cached ONNX exports as ONNX Runtime.

On a 2-core AMD EPYC, OpenVINO runs CAM++'s trunk about twice as fast as ONNX Runtime and
segmentation-3.0 about as fast in batches, a little faster one window at a time, with the
same outputs within float rounding (README "The default models"). In bfloat16, on CPUs that
compute it natively, both run 1.5x faster again, but that is not rounding: the powerset
class of 2.4 % of segmentation frames moves. `runtimes` says where each runs.
"""

from __future__ import annotations

import functools
import io
import queue
import warnings
from pathlib import Path

import openvino
import torch
from torch import nn

from streamdiar.core.int8 import cached_quantized, forget, quantized
from streamdiar.core.onnx_runtime import OnnxModule, cache_dir, export_path

# Threads are not pinned to cores. Pinned, each compiled model's threads are bound to the
# first cores, so that two models running beside each other (a live window's segmentation and
# CAM++'s body, `campplus_backend`) take turns on the same ones: on 2 cores the pair took
# 55-68 ms pinned against 29-35 ms unpinned. Alone, or one after the other (files), pinning
# made no clear difference (README "What each lever gave").
CONFIG = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
# an int8 module's float32 export is checked on this many steps of its example (2 s of fbank)
CHECK_STEPS = 200


@functools.cache
def computes_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere OpenVINO
    would emulate it, slower than float32."""
    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _compiled(
    model: bytes | Path, settings: dict[str, object], cache: Path | None
) -> openvino.CompiledModel:
    """`model` (ONNX, or the .xml of an OpenVINO model) compiled for the CPU with `settings`.
    With a `cache` folder, OpenVINO keeps the compiled model there and later loads it from
    there in a fraction of the time, with the same outputs, bit for bit (README, "What each
    lever gave"). It compiles a damaged entry again, but fails where the folder cannot be
    written."""
    core = openvino.Core()
    if cache is not None:
        core.set_property({"CACHE_DIR": str(cache)})
    source = io.BytesIO(model) if isinstance(model, bytes) else str(model)
    return core.compile_model(core.read_model(source), "CPU", settings)


class OpenVinoModule(OnnxModule):
    """A module's forward pass on CPU tensors through an OpenVINO compiled model, in float32
    (on CPUs with bfloat16 units OpenVINO would otherwise pick bfloat16).

    Calls from several threads at once are safe: each call takes an idle inference request,
    or makes one, and gives it back, so there are as many as calls ever ran at once.
    """

    runtime_name = "OpenVINO"
    precision = "f32"

    def __init__(self, compiled: openvino.CompiledModel) -> None:
        self.compiled = compiled
        self._idle: queue.SimpleQueue[openvino.InferRequest] = queue.SimpleQueue()

    @classmethod
    def _loaded(cls, model: bytes | Path, threads: int) -> "OpenVinoModule":
        settings = {
            **CONFIG,
            "INFERENCE_PRECISION_HINT": cls.precision,
            "INFERENCE_NUM_THREADS": threads,
        }
        # from OpenVINO's cache of compiled models where it can keep one, else compiled anew
        for cache in (cache_dir() / "openvino", None):
            try:
                return cls(_compiled(model, settings, cache))
            except Exception as error:  # OpenVINO raises RuntimeError or its own
                failure = error
        raise RuntimeError(f"OpenVINO cannot load the model ({failure})") from failure

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.detach().to(torch.float32).contiguous()
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            request.infer({0: inputs.numpy()})
            return torch.from_numpy(request.get_output_tensor(0).data.copy())
        finally:
            self._idle.put(request)


class OpenVinoBfloat16Module(OpenVinoModule):
    """OpenVINO computing in bfloat16, for CPUs that do so natively (`computes_bfloat16`).

    Its outputs differ from torch's by about 0.1 on the check input, by design, which is too
    close to what a damaged or foreign file gives: the model is checked in float32 first.
    """

    runtime_name = "OpenVINO bfloat16"
    precision = "bf16"

    @classmethod
    def _checked(
        cls, model: bytes, threads: int, example: torch.Tensor, expected: torch.Tensor
    ) -> "OpenVinoModule":
        OpenVinoModule._checked(model, threads, example, expected)
        return cls._loaded(model, threads)


class OpenVinoInt8Module(OpenVinoModule):
    """A module quantized to int8 (`int8`) and run by OpenVINO: its example input at export is
    also the calibration input, so it must be real (a recording's features, say), the longer
    the better.

    Like bfloat16, int8 is not rounding (README, "What each lever gave"): the float32 export
    is checked against torch before it is quantized, on the example's first CHECK_STEPS steps
    of its last axis. Where the quantized model cannot be made, kept or loaded, the module
    runs in float32, with a warning.
    """

    runtime_name = "OpenVINO int8"
    calibrated = True

    @classmethod
    def export(
        cls, module: nn.Module, example: torch.Tensor, dynamic_axes: dict[int, str], threads: int
    ) -> OpenVinoModule:
        onnx_model, calibration = export_path(module), example.detach().numpy()
        if cached_quantized(onnx_model, calibration) is None:
            # the export to quantize, checked against torch (and kept in the cache)
            OpenVinoModule.export(module, example[..., :CHECK_STEPS], dynamic_axes, threads)
        try:
            model = quantized(onnx_model, calibration)
            try:
                return cls._loaded(model, threads)
            except RuntimeError:  # a damaged model in the cache: made again, once
                forget(onnx_model, calibration)
                return cls._loaded(quantized(onnx_model, calibration), threads)
        except RuntimeError as error:  # QuantizationError is one too
            warnings.warn(f"{type(module).__name__} runs in float32: {error}", stacklevel=2)
            return OpenVinoModule.export(module, example[..., :CHECK_STEPS], dynamic_axes, threads)
