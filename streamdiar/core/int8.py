"""ONNX models quantized to int8 for OpenVINO, once, and kept in the user's cache.

NNCF quantizes (`int8_worker`) in a process of its own: it takes 5-40 s per model, imports
much, and prints its progress on stdout, where the diarization's own output goes. The result
is kept under a name derived from the model, its calibration input and both libraries'
versions, so that later runs load it in a fraction of a second. Where the cache cannot be
written, nothing is quantized: quantizing at every run would cost more than it saves.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from streamdiar.core.onnx_runtime import cache_dir

WORKER = "streamdiar.core.int8_worker"  # the module run in a process of its own
# the end of NNCF's error output kept in the message when it fails
ERROR_CHARACTERS = 300


class QuantizationError(RuntimeError):
    """NNCF could not quantize a model, or its result could not be kept."""


def quantized(onnx_model: Path, calibration: np.ndarray) -> Path:
    """The OpenVINO model (its .xml, beside its .bin) of `onnx_model` quantized to int8,
    calibrated on `calibration` (an input of the model, the longer the better), from the
    cache or made now. Raises QuantizationError where it cannot be made or kept."""
    cached = cached_quantized(onnx_model, calibration)
    if cached is not None:
        return cached
    try:
        folder = _folder(onnx_model, calibration)
    except OSError as error:  # the export was not kept: the cache cannot be written
        raise QuantizationError(f"the cache cannot be written ({error})") from error
    model = folder / "model.xml"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=folder.parent, suffix=".part"))
    except OSError as error:
        raise QuantizationError(f"the cache cannot be written ({error})") from error
    try:
        np.save(partial / "calibration.npy", np.ascontiguousarray(calibration, dtype=np.float32))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                WORKER,
                str(onnx_model),
                str(partial / "calibration.npy"),
                str(partial / "model.xml"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            reason = " ".join(done.stderr.split())[-ERROR_CHARACTERS:]
            raise QuantizationError(f"NNCF failed ({reason})")
        (partial / "calibration.npy").unlink()
        try:
            os.replace(partial, folder)
        except OSError:  # another run kept the same model first
            if not model.is_file():
                raise
    except OSError as error:
        raise QuantizationError(f"the quantized model cannot be kept ({error})") from error
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return model


def cached_quantized(onnx_model: Path, calibration: np.ndarray) -> Path | None:
    """The .xml of the quantized model `quantized` would return, where the cache has it."""
    try:
        model = _folder(onnx_model, calibration) / "model.xml"
    except OSError:
        return None
    return model if model.is_file() and model.with_suffix(".bin").is_file() else None


def forget(onnx_model: Path, calibration: np.ndarray) -> None:
    """Removes the cached quantized model of `onnx_model` and `calibration` (a damaged one)."""
    try:
        shutil.rmtree(_folder(onnx_model, calibration), ignore_errors=True)
    except OSError:
        pass


def _folder(onnx_model: Path, calibration: np.ndarray) -> Path:
    """Where the cache keeps the quantized model, named with a short sha256 of what it is made
    of. Raises OSError where `onnx_model` cannot be read."""
    digest = hashlib.sha256(onnx_model.read_bytes())
    digest.update(np.ascontiguousarray(calibration, dtype=np.float32).tobytes())
    for library in ("nncf", "openvino"):
        digest.update(importlib.metadata.version(library).encode())
    return cache_dir() / "int8" / f"{onnx_model.stem}-{digest.hexdigest()[:16]}"
