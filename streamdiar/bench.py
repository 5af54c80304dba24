"""`streamdiar bench`: pyannote.audio's own SpeakerDiarization pipeline against streamdiar's
file mode, in one process, on the same audio and the same pyannote models; and the compute time
of one live step (one window, batch size 1).

Nothing here imports torch at module level: `streamdiar.cli` imports this module before it
sets the environment torch and pyannote read when imported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import soundfile

from streamdiar.core.types import SAMPLE_RATE
from streamdiar.errors import UserError
from streamdiar.model_flags import add_model_flags, model_source
from streamdiar.samples import sample_wav
from streamdiar.settings import SettingsError

if TYPE_CHECKING:
    from pyannote.audio.pipelines import SpeakerDiarization

    from streamdiar.core.pyannote_backend import PyannoteBackend

# pyannote/speaker-diarization-3.1's settings, with the agglomerative clustering that
# pyannote 3.x used: unlike VBx it needs no PLDA, which only the hub has
PYANNOTE_PARAMETERS = {
    "segmentation": {"min_duration_off": 0.0},
    "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7045654963945799},
}
WARM_UP_SECONDS = 10.0  # audio run through both before timing
BLOCK_SECONDS = 0.5  # audio handed to streamdiar at a time, as file decoding does
LATENCY = 2.0  # s, `streamdiar diarize`'s default


@dataclass(frozen=True)
class BenchResult:
    audio_seconds: float
    device: str
    models: str
    batch_size: int
    pyannote_seconds: float
    streamdiar_seconds: float
    live_window: float  # s
    live_step: float  # s
    live_steps: int  # windows timed one at a time
    live_step_median: float  # s of compute per step
    live_step_p95: float

    @property
    def pyannote_rtf(self) -> float:
        return self.pyannote_seconds / self.audio_seconds

    @property
    def streamdiar_rtf(self) -> float:
        return self.streamdiar_seconds / self.audio_seconds

    @property
    def speedup(self) -> float:
        return self.pyannote_seconds / self.streamdiar_seconds

    def as_dict(self) -> dict[str, object]:
        derived = ("pyannote_rtf", "streamdiar_rtf", "speedup")
        return asdict(self) | {name: getattr(self, name) for name in derived}

    def report(self) -> str:
        keeps_up = "keeps up with" if self.live_step_p95 < self.live_step else "falls behind"
        return "\n".join(
            [
                f"{self.audio_seconds:g} s of audio on {self.device}, pyannote models: "
                f"{self.models}, batch size {self.batch_size}",
                f"pyannote.audio SpeakerDiarization: {self.pyannote_seconds:.2f} s, "
                f"real-time factor {self.pyannote_rtf:.3f}",
                f"streamdiar file mode:              {self.streamdiar_seconds:.2f} s, "
                f"real-time factor {self.streamdiar_rtf:.3f}",
                f"speedup: {self.speedup:.2f}x",
                f"live step ({self.live_window:g} s window every {self.live_step:g} s, "
                f"{self.live_steps} steps): median {self.live_step_median * 1000:.0f} ms, "
                f"p95 {self.live_step_p95 * 1000:.0f} ms ({keeps_up} real time)",
            ]
        )


def bench_audio(seconds: float) -> np.ndarray:
    """(samples,) float32: pyannote.audio's sample call, repeated and cut to `seconds`."""
    sample, rate = soundfile.read(sample_wav(), dtype="float32")
    if rate != SAMPLE_RATE:
        raise RuntimeError(f"{sample_wav()} is at {rate} Hz, expected {SAMPLE_RATE}")
    return np.resize(sample, round(seconds * SAMPLE_RATE))


def pyannote_pipeline(backend: PyannoteBackend, batch_size: int) -> SpeakerDiarization:
    """pyannote.audio's SpeakerDiarization with the backend's own two models."""
    from pyannote.audio.core.plda import PLDA
    from pyannote.audio.pipelines import SpeakerDiarization

    class UnusedPLDA(PLDA):
        """Fills the pipeline's PLDA argument, which agglomerative clustering never reads."""

        def __init__(self) -> None:
            pass

    pipeline = SpeakerDiarization(
        segmentation=backend.segmentation,
        embedding=backend.embedding,
        embedding_exclude_overlap=True,
        plda=UnusedPLDA(),
        clustering="AgglomerativeClustering",
        segmentation_batch_size=batch_size,
        embedding_batch_size=batch_size,
    )
    return pipeline.instantiate(PYANNOTE_PARAMETERS).to(backend.device)


def time_pyannote(pipeline: SpeakerDiarization, audio: np.ndarray) -> float:
    import torch

    file = {"waveform": torch.from_numpy(audio)[None], "sample_rate": SAMPLE_RATE, "uri": "bench"}
    started = time.perf_counter()
    with warnings.catch_warnings():  # pyannote's own, about its untrained models' results
        warnings.simplefilter("ignore")
        pipeline(file)
    return time.perf_counter() - started


def time_streamdiar(backend: PyannoteBackend, audio: np.ndarray, batch_size: int) -> float:
    from streamdiar.session import build_diarizer
    from streamdiar.stream.sources import array_blocks

    diarizer = build_diarizer(backend, LATENCY, batch_size=batch_size)
    started = time.perf_counter()
    blocks = array_blocks(audio, round(BLOCK_SECONDS * SAMPLE_RATE))
    asyncio.run(diarizer.run(blocks, lambda turn: None))
    return time.perf_counter() - started


def live_step_times(backend: PyannoteBackend, audio: np.ndarray, steps: int) -> list[float]:
    """Compute time (s) of each of the first `steps` windows of `audio` as live mode runs
    them: one window through the models, then the stitcher."""
    import torch

    from streamdiar.session import build_diarizer
    from streamdiar.stream.windows import Windower

    stitcher = build_diarizer(backend, LATENCY).stitcher
    needed = round(((steps - 1) * backend.window_step + backend.window_duration) * SAMPLE_RATE)
    times = []
    windower = Windower(backend.window_duration, backend.window_step)
    for window in windower.push(audio[:needed]) + windower.finish():
        started = time.perf_counter()
        (local,) = backend.infer(torch.from_numpy(window.samples)[None])
        stitcher.push(window.index, window.start, window.valid_end, local)
        times.append(time.perf_counter() - started)
    return times


def run_bench(
    backend: PyannoteBackend,
    models: str,
    seconds: float,
    batch_size: int,
    steps: int,
    warm_up_seconds: float = WARM_UP_SECONDS,
) -> BenchResult:
    audio = bench_audio(seconds)
    pipeline = pyannote_pipeline(backend, batch_size)
    if warm_up_seconds > 0:  # first calls allocate and tune: time neither pipeline's
        warm_up = bench_audio(warm_up_seconds)
        time_pyannote(pipeline, warm_up)
        time_streamdiar(backend, warm_up, batch_size)
    step_times = live_step_times(backend, audio, steps)
    return BenchResult(
        audio_seconds=seconds,
        device=backend.device.type,
        models=models,
        batch_size=batch_size,
        pyannote_seconds=time_pyannote(pipeline, audio),
        streamdiar_seconds=time_streamdiar(backend, audio, batch_size),
        live_window=backend.window_duration,
        live_step=backend.window_step,
        live_steps=len(step_times),
        live_step_median=statistics.median(step_times),
        live_step_p95=float(np.percentile(step_times, 95)),
    )


def _bench(args: argparse.Namespace) -> int:
    if not args.seconds > 0 or args.warm_up < 0 or args.batch_size < 1 or args.live_steps < 1:
        raise UserError(
            "--seconds must be positive, --warm-up not negative, --batch-size and --live-steps "
            "at least 1"
        )
    # imported here: torch takes seconds to import, which --help and flag errors skip
    from threadpoolctl import threadpool_limits

    from streamdiar.session import load_backend

    source = model_source(args)
    try:
        backend, device_warning = load_backend(args.backend, args.device, source)
    except SettingsError as error:
        raise UserError(str(error)) from error
    if device_warning:
        warnings.warn(device_warning, stacklevel=1)
    threadpool_limits(1, user_api="blas")  # as `streamdiar diarize` runs the clustering
    result = run_bench(
        backend, source.label, args.seconds, args.batch_size, args.live_steps, args.warm_up
    )
    print(json.dumps(result.as_dict()) if args.json else result.report())
    return 0


def add_bench_command(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="speed of streamdiar's file mode against pyannote.audio's pipeline",
        description="pyannote.audio's SpeakerDiarization pipeline against streamdiar's file "
        "mode, in one process, on the same audio and models; and the compute time of one live "
        "step (one window, batch size 1).",
    )
    bench.set_defaults(run=_bench)
    add = bench.add_argument
    add("--backend", choices=["pyannote"], default="pyannote", help="models to compare (pyannote)")
    add_model_flags(bench)
    add("--seconds", type=float, default=120.0, metavar="S", help="audio length (default: 120)")
    add(
        "--warm-up",
        type=float,
        default=WARM_UP_SECONDS,
        metavar="S",
        help=f"audio run through both untimed first, 0 for none (default: {WARM_UP_SECONDS:g})",
    )
    add("--device", help="auto, cuda, mps or cpu (default: $STREAMDIAR_DEVICE, else auto)")
    add(
        "--batch-size",
        type=int,
        default=32,
        metavar="N",
        help="windows per batch, in both pipelines (default: 32)",
    )
    add("--live-steps", type=int, default=20, metavar="N", help="live steps to time (default: 20)")
    add("--json", action="store_true", help="one JSON object on stdout")
