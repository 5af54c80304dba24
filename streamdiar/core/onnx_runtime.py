"""Torch modules run by ONNX Runtime on the CPU.

On CPU, ONNX Runtime runs the default backend's models about twice as fast as torch eager
(README "Speed"), with the same outputs within float rounding. A module is exported to ONNX
once and kept in the user's cache, under a name derived from its weights, so that later runs
load it in a fraction of a second instead of exporting it again (seconds).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

OPSET = 17
INPUT = "input"
OUTPUT = "output"
# outputs of ONNX Runtime and torch on the check input may differ by float rounding only
CHECK_TOLERANCE = 1e-3
SPINNING = "session.intra_op.allow_spinning"  # the session option: may idle threads spin?


def cache_dir() -> Path:
    """Where exported models are kept: $STREAMDIAR_CACHE, else the user's cache folder."""
    configured = os.environ.get("STREAMDIAR_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "streamdiar"


class OnnxModule:
    """A module's forward pass on CPU tensors through an ONNX Runtime session.

    Calls from several threads at once are safe (`InferenceSession.run` is). Other runtimes
    that read ONNX subclass it, replacing `_loaded` and `__call__`.
    """

    runtime_name = "ONNX Runtime"
    # whether `export` calibrates the module on its example input, which must then be real
    calibrated = False

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self.session = session

    @classmethod
    def export(
        cls, module: nn.Module, example: torch.Tensor, dynamic_axes: dict[int, str], threads: int
    ) -> "OnnxModule":
        """`module` (in eval mode, on the CPU) as ONNX, its input axes `dynamic_axes` free to
        vary (index -> name), run by this class's runtime on `threads` threads. `example` is
        an input of the right rank, on which it and torch must agree; a cached export that
        does not (damaged, or from another exporter) is replaced.

        Raises RuntimeError when the module cannot be exported or gives other outputs.
        """
        with torch.inference_mode():
            expected = module(example)
        path = export_path(module)
        cached = _cached(path)
        if cached is not None:
            try:
                return cls._checked(cached, threads, example, expected)
            except RuntimeError:
                pass
        model = _exported(module, example, dynamic_axes, expected.dim(), path)
        return cls._checked(model, threads, example, expected)

    @classmethod
    def _checked(
        cls, model: bytes, threads: int, example: torch.Tensor, expected: torch.Tensor
    ) -> "OnnxModule":
        onnx_module = cls._loaded(model, threads)
        difference = (onnx_module(example) - expected).abs().max().item()
        if not difference <= CHECK_TOLERANCE:
            raise RuntimeError(f"{cls.runtime_name} differs from torch by {difference:.2g}")
        return onnx_module

    @classmethod
    def _loaded(cls, model: bytes, threads: int) -> "OnnxModule":
        """The runtime's module for ONNX `model`; RuntimeError for a model it cannot load."""
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
        # without its arena, which keeps the largest buffers it ever used: 130 MB less RSS
        options.enable_cpu_mem_arena = False
        # Its threads sleep when a run ends instead of spinning: the two models' thread pools
        # and torch's take turns on the same cores, and a spinning pool holds a core the next
        # step needs (streamed windows on 2 busy cores: 60-82 ms each instead of 93-94), and
        # one a transcriber beside it needs.
        options.add_session_config_entry(SPINNING, "0")
        try:
            session = onnxruntime.InferenceSession(
                model, options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # ONNX Runtime's own exception types, for a bad model
            raise RuntimeError(f"ONNX Runtime cannot load the model ({error})") from error
        return cls(session)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.detach().to(torch.float32).contiguous()
        (outputs,) = self.session.run([OUTPUT], {INPUT: inputs.numpy()})
        return torch.from_numpy(outputs)


def export_path(module: nn.Module) -> Path:
    """Where the cache keeps the ONNX export of `module`."""
    return cache_dir() / "onnx" / f"{type(module).__name__}-{weights_digest(module)}.onnx"


def weights_digest(module: nn.Module) -> str:
    """A short sha256 of the module's parameters and buffers, names and values, and of the
    torch version that exports it."""
    digest = hashlib.sha256(torch.__version__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes())
    return digest.hexdigest()[:16]


def _cached(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _exported(
    module: nn.Module,
    example: torch.Tensor,
    dynamic_axes: dict[int, str],
    output_rank: int,
    path: Path,
) -> bytes:
    """The ONNX model of `module`, also written to `path` (atomically, so that concurrent runs
    and a crash leave either nothing or a whole file) when the folder can be written."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's own, about its tracing
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            buffer,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={
                INPUT: dynamic_axes,
                OUTPUT: {axis: f"output_{axis}" for axis in range(output_rank)},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    model = buffer.getvalue()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, partial = tempfile.mkstemp(dir=path.parent, suffix=".part")
    except OSError:
        return model  # no cache: the next run exports again
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(model)
        os.replace(partial, path)
    except OSError:
        Path(partial).unlink(missing_ok=True)
    return model
