"""What runs the default backend's models on CPU, as asked for in $STREAMDIAR_RUNTIME, and
in which precision torch runs CAM++ (on accelerators), as asked for in $STREAMDIAR_PRECISION,
and whether the models replay CUDA graphs on CUDA, as asked for in $STREAMDIAR_CUDA_GRAPHS.

Kept apart from `onnx_runtime` so that the command line can name the choices without importing
ONNX Runtime or torch.

- auto (the default): in each mode the fastest runtimes that kept dev DER within half a point,
  averaged over 15 starts of the stream (README "The default models"): a file's batches of
  consecutive windows on OpenVINO in float32, CAM++'s trunk in int8 (`int8`); live windows,
  one at a time, on OpenVINO in bfloat16 where the CPU computes it natively, elsewhere on
  ONNX Runtime but for CAM++'s body, on OpenVINO, all in float32.
- onnx: ONNX Runtime, both modes.
- openvino: OpenVINO in float32, both modes.
- openvino-bf16: OpenVINO in bfloat16 where the CPU computes it natively (else float32), both
  models in both modes: live windows as auto runs them there; files about 1.4x faster than
  auto, other results (not the default: README).
- torch: torch eager.
"""

from __future__ import annotations

import os

RUNTIMES = ("auto", "onnx", "openvino", "openvino-bf16", "torch")  # the first is the default
# Where torch runs CAM++'s trunk (CUDA, MPS, or the torch runtime on CPU):
# - auto (the default): float16 on CUDA, float32 elsewhere;
# - float16: float16 wherever torch runs it (autocast: its normalisations stay float32);
# - float32.
# segmentation-3.0 stays in float32: in float16 the powerset class of 1.5 % of its frames
# changed (README "The default models").
PRECISIONS = ("auto", "float32", "float16")
# On CUDA, the models replay CUDA graphs (`cuda_graphs`) unless this is off.
CUDA_GRAPHS = ("on", "off")


def requested_runtime() -> str:
    """The CPU runtime asked for in $STREAMDIAR_RUNTIME (default: auto). Raises ValueError
    for an unknown name."""
    return _requested("STREAMDIAR_RUNTIME", RUNTIMES)


def requested_precision() -> str:
    """The precision of CAM++'s trunk asked for in $STREAMDIAR_PRECISION (default: auto).
    Raises ValueError for an unknown name."""
    return _requested("STREAMDIAR_PRECISION", PRECISIONS)


def requested_cuda_graphs() -> bool:
    """Whether the models replay CUDA graphs on CUDA, as asked for in $STREAMDIAR_CUDA_GRAPHS
    (default: on). Raises ValueError for a value other than on or off."""
    return _requested("STREAMDIAR_CUDA_GRAPHS", CUDA_GRAPHS) == "on"


def _requested(variable: str, choices: tuple[str, ...]) -> str:
    """The choice named in environment variable `variable`, the first of `choices` when it is
    unset or empty. Raises ValueError for a name not among them."""
    value = os.environ.get(variable, "").strip().lower() or choices[0]
    if value not in choices:
        raise ValueError(f"{variable} must be one of {', '.join(choices)}, got {value!r}")
    return value
