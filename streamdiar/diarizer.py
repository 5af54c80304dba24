"""Diarizer: a backend's models loaded once, for files, pushed audio and async streams."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import AsyncIterable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from threadpoolctl import threadpool_limits

from streamdiar.core.backend import Backend
from streamdiar.core.pyannote_models import ModelSource
from streamdiar.core.types import SAMPLE_RATE, Turn
from streamdiar.enrolment import voiceprint_model
from streamdiar.pushed_session import Session
from streamdiar.session import build_diarizer, file_batch_size, load_backend
from streamdiar.settings import BACKENDS, SettingsError, check_backend, check_settings
from streamdiar.shared_backend import SharedBackend
from streamdiar.speaker_store import SpeakerStore
from streamdiar.stream.pipeline import StreamingDiarizer
from streamdiar.stream.pushed import BlockConverter, converted_blocks
from streamdiar.stream.sources import file_blocks, probe
from streamdiar.turn_stream import TurnStream

Result = TypeVar("Result")

# The most windows of concurrent live streams run as one batch on CPU (on an accelerator, file
# mode's batch size where that is larger). On a 2-core CPU the default backend costs 105 ms
# per window alone, 70 ms in fours, 60 ms in eights and 147 ms in sixteens.
MERGED_WINDOWS = 8


class Diarizer:
    """Who spoke when, with a backend's models loaded once for any number of streams.

    The defaults, checks and device rules are `streamdiar diarize`'s: `backend` None is the
    default (campplus); `device` None takes $STREAMDIAR_DEVICE, else the best accelerator if
    $USE_GPU_DIARIZATION is 1, else auto (CUDA, then MPS, then CPU); "gpu" is the best
    accelerator. An asked-for accelerator that is missing, or fails at load, gives a warning
    and CPU. `latency` (0.5-5 s, or math.inf to commit nothing before the end) is how far
    behind the audio a turn becomes final; `window` and `step` default to the backend's (its
    file windows for files, unless `batch_size` is 1: campplus 10 s every 10/3 s there, 8 s
    every 0.5 s live), `batch_size` (windows per model call) to the device's. `model_source` says
    where the pyannote backend's models come from. `speakers`, a speaker store (`streamdiar
    enroll`), names each stream's speakers who match an enrolled person after them: turns
    carry the name from the moment it is given, and the stream's `stats.namings` says which
    label got it.

    Raises SettingsError for an unknown backend or device, a value out of range, or models
    that cannot be had, and SpeakerStoreError for a store that cannot be read or that another
    model made, with the line the command prints.

    Building one limits BLAS (numpy, scipy) to one thread in this process, as the command
    does: the clustering's small matrices run beside the model's threads, and more BLAS
    threads than cores there slow each re-clustering a hundredfold.

    Several streams may run at once, from several threads or in one event loop: each has its
    own speakers, and all share the models, which run one call at a time.
    """

    def __init__(
        self,
        backend: str | None = None,
        device: str | None = None,
        latency: float = 2.0,
        *,
        window: float | None = None,
        step: float | None = None,
        batch_size: int | None = None,
        model_source: ModelSource | None = None,
        speakers: str | os.PathLike[str] | None = None,
    ) -> None:
        backend = BACKENDS[0] if backend is None else backend
        check_backend(backend)
        check_settings(latency, window, step, batch_size)
        self.people: dict[str, np.ndarray] = {}  # name -> voiceprints (m, dim)
        if speakers is not None:
            with SpeakerStore(speakers) as store:
                self.people = store.voiceprints(voiceprint_model(backend))
            if not self.people:
                warnings.warn(f"nobody is enrolled in {store.path}: nobody is named", stacklevel=2)
        loaded, warning = load_backend(backend, device, model_source)
        if warning:
            warnings.warn(warning, stacklevel=2)
        threadpool_limits(1, user_api="blas")
        # for every stream, thread-safe; the live windows of streams that wait for the models
        # at once go through them together
        merged = MERGED_WINDOWS
        if loaded.device.type != "cpu":
            merged = max(merged, file_batch_size(loaded))
        self.models: Backend = SharedBackend(loaded, merged)
        self.latency = latency
        self._window = window
        self._step = step
        self._batch_size = batch_size
        self._pipeline()  # the window and step checked against each other, now

    @property
    def backend(self) -> str:
        """The backend's name: campplus, pyannote or embedded."""
        return self.models.name

    @property
    def device(self) -> str:
        """Where the models run: cuda, mps or cpu."""
        return self.models.device.type

    def diarize(self, path: str | os.PathLike[str]) -> list[Turn]:
        """Every turn of an audio file, in the order of commitment: the file streamed block by
        block, never loaded whole, exactly as `streamdiar diarize` streams it.

        Any format `streamdiar diarize` reads (WAV, FLAC, OGG, and anything ffmpeg decodes),
        at any rate and channel count. Raises AudioError for a file that is missing or cannot
        be decoded. Called from a running event loop (a notebook), it runs in a thread of its
        own.
        """
        return _run_to_end(_collected(self.stream(path)))

    def session(self, sample_rate: int = SAMPLE_RATE, channels: int = 1) -> Session:
        """A stream to push audio into, block by block, from a plain thread: blocks of
        `sample_rate` Hz with `channels` channels. Raises SettingsError for a rate or channel
        count below 1.

        Pushed audio is live audio: each window is inferred on its own, so the turns are those
        of `diarize` with `batch_size=1`, whatever the block sizes (`diarize`'s batches of
        consecutive windows share one CAM++ pass, which needs the audio ahead)."""
        return Session(self._pipeline(), sample_rate, channels)

    def stream(
        self,
        source: str | os.PathLike[str] | AsyncIterable[ArrayLike],
        sample_rate: int | None = None,
        channels: int | None = None,
    ) -> TurnStream:
        """The turns of `source` as they are committed: `async for turn in
        diarizer.stream(source)`.

        source: an audio file (checked now: AudioError if it is missing or undecodable), or
        an async iterable of blocks as `Session.push` takes them, of `sample_rate` Hz (default
        16000) and `channels` channels (default 1), which a file has of its own. A file is
        diarized as `diarize` does it; blocks as live audio, as `session` does.
        """
        if isinstance(source, (str, os.PathLike)):
            if sample_rate is not None or channels is not None:
                raise SettingsError("sample_rate and channels describe blocks: a file has its own")
            return TurnStream(
                self._pipeline(whole_batches=True), file_blocks(probe(Path(source)).path)
            )
        if not isinstance(source, AsyncIterable):
            raise TypeError(
                f"source must be a path or an async iterable of blocks, got {type(source).__name__}"
            )
        convert = BlockConverter(
            SAMPLE_RATE if sample_rate is None else sample_rate, 1 if channels is None else channels
        )
        return TurnStream(self._pipeline(), converted_blocks(source, convert))

    def _pipeline(self, whole_batches: bool = False) -> StreamingDiarizer:
        """The pipeline of one stream: its own stitcher and speakers, the shared models;
        `whole_batches` for a file."""
        return build_diarizer(
            self.models,
            self.latency,
            self._window,
            self._step,
            self._batch_size,
            people=self.people,
            whole_batches=whole_batches,
        )


async def _collected(turns: TurnStream) -> list[Turn]:
    return [turn async for turn in turns]


def _run_to_end(coroutine: Coroutine[Any, Any, Result]) -> Result:
    """The coroutine's result, run in an event loop of its own; in a thread of its own when
    this thread already runs a loop (which asyncio.run refuses)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamdiar-diarize") as worker:
        return worker.submit(asyncio.run, coroutine).result()
