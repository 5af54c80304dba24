"""A StreamingDiarizer from checked settings: the backend's models on the chosen device, and a
fresh clustering and stitcher for each stream."""

from __future__ import annotations

from streamdiar.core.backend import Backend
from streamdiar.core.clustering import OnlineClustering
from streamdiar.core.device import DeviceError, requested_device, resolve_device
from streamdiar.core.embedded import EmbeddedBackend
from streamdiar.core.stitching import Stitcher
from streamdiar.settings import SettingsError, check_backend, check_settings
from streamdiar.stream.pipeline import StreamingDiarizer


def load_backend(backend_name: str, device_flag: str | None) -> tuple[Backend, str | None]:
    """The backend on the device asked for (flag, then environment, then auto), and a warning
    when an asked-for accelerator is missing and CPU is used instead.

    Raises SettingsError for an unknown backend or device name.
    """
    check_backend(backend_name)
    try:
        device, warning = resolve_device(requested_device(device_flag))
    except DeviceError as error:
        raise SettingsError(str(error)) from None
    return EmbeddedBackend().to(device), warning


def build_diarizer(
    backend: Backend,
    latency: float,
    window: float | None = None,
    step: float | None = None,
    batch_size: int = 1,
) -> StreamingDiarizer:
    """A diarizer for one stream; window and step default to the backend's.

    Models load once per backend, while each stream needs its own speakers, so a backend is
    shared by the diarizers built from it (one stream at a time).
    """
    window = backend.window_duration if window is None else window
    step = backend.window_step if step is None else step
    check_settings(latency, window, step, batch_size)
    stitcher = Stitcher(
        OnlineClustering(),
        backend.frame_step,
        latency=latency,
        max_speakers_per_frame=backend.max_local_speakers,
        speech_threshold=backend.speech_threshold,
    )
    return StreamingDiarizer(backend, stitcher, window, step, batch_size)
