"""Torch modules run by OpenVINO on the CPU, from the same cached ONNX exports as ONNX Runtime.

On a 2-core AMD EPYC, OpenVINO runs CAM++'s trunk about twice as fast as ONNX Runtime and
segmentation-3.0 about as fast in batches, a little faster one window at a time, with the
same outputs within float rounding (README "The default models"). It computes in float32: its bfloat16,
faster again on CPUs that have it, moves powerset classes on 2.4 % of frames.
"""

from __future__ import annotations

import io
import queue

import openvino
import torch

from streamdiar.core.onnx_runtime import OnnxModule

# float32 everywhere: on CPUs with bfloat16 units OpenVINO would otherwise pick bfloat16
CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


class OpenVinoModule(OnnxModule):
    """A module's forward pass on CPU tensors through an OpenVINO compiled model.

    Calls from several threads at once are safe: each call takes an idle inference request,
    or makes one, and gives it back, so there are as many as calls ever ran at once.
    """

    runtime_name = "OpenVINO"

    def __init__(self, compiled: openvino.CompiledModel) -> None:
        self.compiled = compiled
        self._idle: queue.SimpleQueue[openvino.InferRequest] = queue.SimpleQueue()

    @classmethod
    def _loaded(cls, model: bytes, threads: int) -> "OpenVinoModule":
        core = openvino.Core()
        try:
            compiled = core.compile_model(
                core.read_model(io.BytesIO(model)),
                "CPU",
                {**CONFIG, "INFERENCE_NUM_THREADS": threads},
            )
        except Exception as error:  # OpenVINO raises RuntimeError or its own for a bad model
            raise RuntimeError(f"OpenVINO cannot load the model ({error})") from error
        return cls(compiled)

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
