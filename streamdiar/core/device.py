"""Choice of the torch device: CUDA, then MPS, then CPU, with overrides from flags and env."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

# "gpu": the best accelerator, as auto, but a missing one is warned about
DEVICE_CHOICES = ("auto", "gpu", "cuda", "mps", "cpu")


class DeviceError(ValueError):
    """The requested device name is not one streamdiar knows."""


def requested_device(flag: str | None, env: Mapping[str, str] | None = None) -> str:
    """The device the user asked for: the flag wins, then STREAMDIAR_DEVICE, then
    USE_GPU_DIARIZATION=1 ("gpu": the best accelerator, with a warning if there is none),
    else auto."""
    env = os.environ if env is None else env
    if flag is None and not env.get("STREAMDIAR_DEVICE") and env.get("USE_GPU_DIARIZATION") == "1":
        return "gpu"
    name = (flag or env.get("STREAMDIAR_DEVICE") or "auto").strip().lower()
    if name not in DEVICE_CHOICES:
        raise DeviceError(f"unknown device {name!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    return name


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str) -> tuple[torch.device, str | None]:
    """The torch device for `name`, and a warning when an asked-for accelerator is missing
    and CPU is used instead."""
    if name in ("auto", "gpu"):
        if torch.cuda.is_available():
            return torch.device("cuda"), None
        if _mps_available():
            return torch.device("mps"), None
        warning = "no GPU (CUDA or MPS) is available; using CPU" if name == "gpu" else None
        return torch.device("cpu"), warning
    if name == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu"), "CUDA was requested but is not available; using CPU"
    if name == "mps" and not _mps_available():
        return torch.device("cpu"), "MPS was requested but is not available; using CPU"
    return torch.device(name), None
