"""What runs the default backend's models on CPU, as asked for in $STREAMDIAR_RUNTIME.

Kept apart from `onnx_runtime` so that the command line can name the choices without importing
ONNX Runtime or torch.
"""

from __future__ import annotations

import os

RUNTIMES = ("onnx", "openvino", "torch")  # the first is the default


def requested_runtime() -> str:
    """The CPU runtime asked for in $STREAMDIAR_RUNTIME (default: onnx). Raises ValueError
    for an unknown name."""
    runtime = os.environ.get("STREAMDIAR_RUNTIME", "").strip().lower() or RUNTIMES[0]
    if runtime not in RUNTIMES:
        raise ValueError(f"STREAMDIAR_RUNTIME must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    return runtime
