"""A batch worker: a Diarizer whose models load once, then one file after another, each into
its outputs. The same class runs in a local worker process and as a Ray actor."""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from streamdiar.batch.inputs import BatchFile
from streamdiar.batch.outputs import FileOutputs, written_whole
from streamdiar.batch.results import DONE, ResultRow
from streamdiar.core.pyannote_models import ModelSource
from streamdiar.core.types import Turn
from streamdiar.errors import StreamdiarError
from streamdiar.stream.sinks import JsonlWriter
from streamdiar.stream.sources import probe
from streamdiar.transcript.align import DEFAULT_TOLERANCE, align
from streamdiar.transcript.readers import check_times, read_transcript
from streamdiar.transcript.types import Segment
from streamdiar.transcript.writers import TranscriptWriter

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker of a batch is given: the settings of `streamdiar diarize` and where
    the outputs go."""

    out_dir: Path  # absolute: workers may run elsewhere
    backend: str | None = None
    device: str | None = None
    latency: float = 2.0
    model_source: ModelSource = field(default_factory=ModelSource)
    transcript_format: str = "srt"
    tolerance: float = DEFAULT_TOLERANCE
    # torch's threads, which the compiled runtimes take; None leaves them be
    threads: int | None = None


@dataclass(frozen=True)
class LoadReport:
    device: str  # where the models run: cuda, mps or cpu
    warnings: tuple[str, ...]  # what loading them warned about (a missing accelerator)


def limit_threads(threads: int) -> None:
    """Runs torch and the compiled runtimes (which take torch's thread count) on `threads`
    threads, so that workers side by side do not ask for more cores than there are. Called
    before torch is first imported, the OpenMP pools start at that size too."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


class FileWorker:
    """Diarizes files into their outputs. `load` loads the models (once); `process` does one
    file and returns its results row.

    An error of the file's own (missing, undecodable, a transcript that does not fit it) is
    its failed row: no retry could help. Any other exception is raised, for the pool to try
    the file again.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._diarizer = None

    def load(self) -> LoadReport:
        if self.settings.threads is not None:
            limit_threads(self.settings.threads)
        from streamdiar.diarizer import Diarizer

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self._diarizer = Diarizer(
                self.settings.backend,
                self.settings.device,
                self.settings.latency,
                model_source=self.settings.model_source,
            )
        return LoadReport(self._diarizer.device, tuple(str(w.message) for w in caught))

    def process(self, file: BatchFile) -> ResultRow:
        if self._diarizer is None:
            raise RuntimeError("FileWorker.load() must come before process()")
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                info = probe(file.path)
                segments = None
                if file.transcript is not None:
                    source = str(file.transcript)
                    segments = check_times(read_transcript(file.transcript), info.duration, source)
                turns = self._diarizer.diarize(info.path)
                self._write(file, turns, segments)
            except StreamdiarError as error:
                return ResultRow.failed(str(file.path), file.uri, str(error))
        elapsed = time.perf_counter() - started
        seconds = info.duration
        return ResultRow(
            str(file.path),
            file.uri,
            DONE,
            audio_seconds=seconds,
            speakers=len({turn.speaker for turn in turns}),
            real_time_factor=elapsed / seconds if seconds else None,
            warning="; ".join(dict.fromkeys(" ".join(str(w.message).split()) for w in caught)),
        )

    def _write(self, file: BatchFile, turns: list[Turn], segments: list[Segment] | None) -> None:
        """The outputs `streamdiar diarize --rttm`, `--jsonl` and `streamdiar transcript`
        write for the file, each whole or not at all."""
        from streamdiar.turns import to_rttm

        settings = self.settings
        outputs = FileOutputs.of(file, settings.out_dir, settings.transcript_format)
        with written_whole(outputs.paths()) as open_partial:
            open_partial(outputs.rttm).write(to_rttm(turns, file.uri))
            events = JsonlWriter(open_partial(outputs.turns))
            for turn in turns:
                events.write(file.uri, turn)
            if outputs.transcript is not None and segments is not None:
                transcript = TranscriptWriter(
                    open_partial(outputs.transcript), settings.transcript_format
                )
                for piece in align(turns, segments, settings.tolerance):
                    transcript.write(piece)
                transcript.close()
