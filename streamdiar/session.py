"""A StreamingDiarizer from checked settings: the backend's models on the chosen device, and a
fresh clustering and stitcher for each stream."""

from __future__ import annotations

import numpy as np
import torch

from streamdiar.core.backend import Backend
from streamdiar.core.clustering import OnlineClustering
from streamdiar.core.device import DeviceError, requested_device, resolve_device
from streamdiar.core.embedded import EmbeddedBackend
from streamdiar.core.pyannote_models import ModelSource, ModelSourceError, load_models
from streamdiar.core.runtimes import requested_cuda_graphs
from streamdiar.core.stitching import Stitcher
from streamdiar.core.types import SAMPLE_RATE
from streamdiar.core.voiceprints import SpeakerNamer
from streamdiar.settings import SettingsError, check_backend, check_settings
from streamdiar.stream.pipeline import StreamingDiarizer


def load_backend(
    backend_name: str, device_flag: str | None, models: ModelSource | None = None
) -> tuple[Backend, str | None]:
    """The backend on the device asked for (flag, then environment, then auto), and a warning
    when an asked-for accelerator is missing and CPU is used instead. `models` says where the
    pyannote backend's models come from (default: the Hugging Face hub).

    Raises SettingsError for an unknown backend or device name, or models that cannot be had.
    """
    check_backend(backend_name)
    try:
        device, warning = resolve_device(requested_device(device_flag))
    except DeviceError as error:
        raise SettingsError(str(error)) from None
    if backend_name == "pyannote":
        backend = _pyannote_backend(models or ModelSource())
    elif models is not None and models != ModelSource():
        raise SettingsError(
            "model sources (--hf-token, --segmentation, ...) need --backend pyannote"
        )
    elif backend_name == "campplus":
        backend = _campplus_backend()
    else:
        backend = EmbeddedBackend()
    return place_on_device(backend, device, warning)


def place_on_device(
    backend: Backend, device: torch.device, warning: str | None
) -> tuple[Backend, str | None]:
    """The backend moved to `device` and run once on a short silent window, so that a broken
    accelerator (driver, memory) shows at load and the run starts on CPU instead."""
    if device.type == "cpu":
        return backend.to(device), warning
    try:
        backend.to(device).infer(torch.zeros(1, SAMPLE_RATE))
    except RuntimeError as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return backend.to(torch.device("cpu")), f"{device.type} failed at load ({reason}); using CPU"
    return backend, warning


def _pyannote_backend(models: ModelSource) -> Backend:
    try:
        cuda_graphs = requested_cuda_graphs()
    except ValueError as error:
        raise SettingsError(str(error)) from None
    try:
        segmentation, embedding = load_models(models)
    except ModelSourceError as error:
        raise SettingsError(str(error)) from None
    # imported here: pyannote.audio takes seconds to import, which the embedded backend and
    # missing models skip
    from streamdiar.core.pyannote_backend import PyannoteBackend

    return PyannoteBackend(
        segmentation, embedding, random_weights=models.random_weights, cuda_graphs=cuda_graphs
    )


def _campplus_backend() -> Backend:
    from streamdiar.core.campplus_backend import CampplusBackend

    try:
        return CampplusBackend.packaged()
    except ModelSourceError as error:
        raise SettingsError(str(error)) from None


# Windows per batch in file mode. On a GPU, larger batches keep it busy (out of memory halves
# them). On CPU, the embedded backend's LSTM gains up to about 32. The campplus and pyannote
# backends' batches are whole multiples of the 16 consecutive windows that share one trunk
# pass (`shared_trunk`), so that every device gives the same turns.
FILE_BATCH_SIZES = {
    "cpu": {"embedded": 32, "pyannote": 16, "campplus": 16},
    "cuda": {"embedded": 128, "pyannote": 64, "campplus": 64},
    "mps": {"embedded": 64, "pyannote": 32, "campplus": 32},
}


def file_batch_size(backend: Backend) -> int:
    """The default batch size for files, for the backend on its device."""
    return FILE_BATCH_SIZES.get(backend.device.type, FILE_BATCH_SIZES["cpu"])[backend.name]


def build_diarizer(
    backend: Backend,
    latency: float,
    window: float | None = None,
    step: float | None = None,
    batch_size: int | None = None,
    queue_windows: int = 64,
    people: dict[str, np.ndarray] | None = None,
    whole_batches: bool = False,
) -> StreamingDiarizer:
    """A diarizer for one stream; window and step default to the backend's (its file windows
    for `whole_batches` of more than one window), the batch size to `file_batch_size` (a live
    diarizer passes its own). `queue_windows` bounds the windows waiting for the model (live
    capture keeps it small, so that a slow model makes capture drop old audio instead of
    falling ever further behind).
    `whole_batches` is for files: batches of consecutive windows that share work
    (`StreamingDiarizer`).

    Models load once per backend, while each stream needs its own speakers, so a backend is
    shared by the diarizers built from it (one stream at a time). `people` (name ->
    voiceprints) names the stream's speakers after enrolled people.
    """
    batch_size = file_batch_size(backend) if batch_size is None else batch_size
    # one window per batch gives the live results, so it keeps the live windows
    files = whole_batches and batch_size > 1
    if window is None:
        window = backend.file_window_duration if files else backend.window_duration
    if step is None:
        step = backend.file_window_step if files else backend.window_step
    check_settings(latency, window, step, batch_size)
    stitcher = Stitcher(
        OnlineClustering.for_step(step, eigen_threshold=backend.eigen_threshold),
        backend.frame_step,
        latency=latency,
        max_speakers_per_frame=backend.max_local_speakers,
        speech_threshold=backend.speech_threshold,
        min_gap=backend.min_gap,
        namer=SpeakerNamer.for_step(people, step) if people else None,
    )
    return StreamingDiarizer(
        backend, stitcher, window, step, batch_size, queue_windows, whole_batches
    )


# The most windows waiting for the model in a live stream. A live diarizer infers windows one at
# a time while it keeps up, and a backlog (a busy CPU, a slow device) as one batch, which costs
# a fraction per window; a longer queue would only hide a backlog that capture should drop
# instead.
LIVE_QUEUE_WINDOWS = 8


def build_live_diarizer(
    backend: Backend, latency: float, people: dict[str, np.ndarray] | None = None
) -> StreamingDiarizer:
    """A diarizer for live audio (a microphone, a socket), at the backend's window and step;
    `people` (name -> voiceprints) names its speakers after enrolled people."""
    return build_diarizer(
        backend,
        latency,
        batch_size=LIVE_QUEUE_WINDOWS,
        queue_windows=LIVE_QUEUE_WINDOWS,
        people=people,
    )
