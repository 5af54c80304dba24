"""Limits on the settings a user gives, checked before any model is loaded."""

from __future__ import annotations

import math
import numbers

from streamdiar.core.types import SAMPLE_RATE
from streamdiar.errors import StreamdiarError

BACKENDS = ("campplus", "pyannote", "embedded")  # the first is the default
LATENCY_RANGE = (0.5, 5.0)  # seconds


class SettingsError(StreamdiarError, ValueError):
    """A setting is unknown or out of range; str(error) is one clear line."""


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise SettingsError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")


def check_settings(
    latency: float, window: float | None, step: float | None, batch_size: int | None
) -> None:
    """Raises SettingsError for values no run can use. A window or step of None stands for
    the backend's default, so the step is compared with the window only when both are given.
    An infinite latency is offline mode: nothing is committed before the end. A batch size of
    None is chosen for the device."""
    low, high = LATENCY_RANGE
    if not (low <= latency <= high or latency == math.inf):
        raise SettingsError(f"latency must be between {low:g} and {high:g} s, got {latency:g}")
    for name, value in (("window", window), ("step", step)):
        if value is not None and not (math.isfinite(value) and round(value * SAMPLE_RATE) >= 1):
            raise SettingsError(
                f"{name} must be a finite number of seconds, at least one sample "
                f"(1/{SAMPLE_RATE} s), got {value:g}"
            )
    if window is not None and step is not None and step > window:
        raise SettingsError(f"step ({step:g} s) must not exceed the window ({window:g} s)")
    if batch_size is not None and batch_size < 1:
        raise SettingsError(f"batch size must be at least 1, got {batch_size}")


def check_stream_format(sample_rate: int, channels: int) -> None:
    """Raises SettingsError unless blocks of this rate and channel count can be diarized."""
    for name, value, unit in (("sample rate", sample_rate, " Hz"), ("channels", channels, "")):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise SettingsError(f"{name} must be a whole number{unit} of at least 1, got {value!r}")
