"""What runs the default backend's models on CPU, as asked for in $STREAMDIAR_RUNTIME.

Kept apart from `onnx_runtime` so that the command line can name the choices without importing
ONNX Runtime or torch.

- auto (the default): in each mode the fastest runtimes that kept dev DER within half a point,
  averaged over 15 starts of the stream (README "The default models"): a file's batches of
  consecutive windows on OpenVINO; live windows, one at a time, on ONNX Runtime but for
  CAM++'s body, on OpenVINO; all in float32.
- onnx: ONNX Runtime, both modes.
- openvino: OpenVINO in float32, both modes.
- openvino-bf16: OpenVINO in bfloat16 where the CPU computes it natively (else float32), both
  modes: about twice as fast as ONNX Runtime, not rounding but other results (not the
  default: README).
- torch: torch eager.
"""

from __future__ import annotations

import os

RUNTIMES = ("auto", "onnx", "openvino", "openvino-bf16", "torch")  # the first is the default


def requested_runtime() -> str:
    """The CPU runtime asked for in $STREAMDIAR_RUNTIME (default: auto). Raises ValueError
    for an unknown name."""
    runtime = os.environ.get("STREAMDIAR_RUNTIME", "").strip().lower() or RUNTIMES[0]
    if runtime not in RUNTIMES:
        raise ValueError(f"STREAMDIAR_RUNTIME must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    return runtime
