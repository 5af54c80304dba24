"""One measured run of `streamdiar bench`, in a process of its own so that its peak memory is
its own: `python -m streamdiar.cli.bench_run --audio FILE --mode MODE ...` prints one JSON object.

Modes:
- `file`: `streamdiar diarize`'s pipeline, windows batched on the device.
- `streaming`: one window at a time, as live capture runs them, every 0.5 s.
- `pyannote.audio`: pyannote.audio's own SpeakerDiarization pipeline with the backend's models.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
import warnings
from collections.abc import AsyncIterable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamdiar.cli.model_flags import add_model_flags, model_source
from streamdiar.core.types import SAMPLE_RATE, Turn
from streamdiar.memory import fix_mmap_threshold
from streamdiar.settings import BACKENDS

if TYPE_CHECKING:
    from pyannote.audio.pipelines import SpeakerDiarization
    from pyannote.core import Annotation

    from streamdiar.core.backend import Backend
    from streamdiar.core.pyannote_backend import PyannoteBackend
    from streamdiar.stream.pipeline import PipelineStats

MODES = ("file", "streaming", "pyannote.audio")
STREAMING_STEP = 0.5  # s
LATENCY = 2.0  # s, `streamdiar diarize`'s default
WARM_UP_SECONDS = 10.0  # first calls allocate and tune: run this much audio untimed first
# pyannote/speaker-diarization-3.1's settings, with the agglomerative clustering that
# pyannote 3.x used: unlike VBx it needs no PLDA, which only the hub has
PYANNOTE_PARAMETERS = {
    "segmentation": {"min_duration_off": 0.0},
    "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7045654963945799},
}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes / KiB


def _diarize(
    backend: Backend, audio: Path, mode: str, batch_size: int, reference: Path | None
) -> dict:
    from pyannote.core import Annotation, Segment

    from streamdiar.core.timing import StageClock
    from streamdiar.session import build_diarizer
    from streamdiar.stream.sources import array_blocks, file_blocks

    streaming = mode == "streaming"
    step = STREAMING_STEP if streaming else None

    def run(blocks: AsyncIterable[np.ndarray], on_turn: Callable[[Turn], None]) -> PipelineStats:
        diarizer = build_diarizer(
            backend, LATENCY, step=step, batch_size=batch_size, whole_batches=not streaming
        )
        return asyncio.run(diarizer.run(blocks, on_turn))

    warm_up = np.random.default_rng(0).normal(0, 0.05, round(WARM_UP_SECONDS * SAMPLE_RATE))
    run(array_blocks(warm_up.astype(np.float32), SAMPLE_RATE // 2), lambda turn: None)
    backend.clock = StageClock()
    hypothesis = Annotation(uri=audio.stem)

    def on_turn(turn: Turn) -> None:
        hypothesis[Segment(turn.start, turn.end)] = turn.speaker

    started = time.perf_counter()
    # live audio comes a step at a time
    stats = run(file_blocks(audio, STREAMING_STEP) if streaming else file_blocks(audio), on_turn)
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()  # before scoring, which holds the whole reference and hypothesis
    return {
        "peak_rss_mb": peak,
        "seconds": seconds,
        "audio_seconds": stats.audio_seconds,
        "decode_seconds": stats.decode_seconds,
        "segmentation_seconds": backend.clock.seconds["segmentation"],
        "embedding_seconds": backend.clock.seconds["embedding"],
        "clustering_seconds": stats.stitching_seconds,
        "windows": stats.windows,
        # the models' compute per batch (one window when streaming), the median of all batches:
        # the whole call, as the stages may run at once
        "batch_ms_median": 1000 * float(np.median(backend.clock.calls["model"])),
        "speakers": len(stats.speakers),
        "der": _der(reference, hypothesis),
    }


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


def _pyannote_audio(backend: PyannoteBackend, audio: Path, batch_size: int) -> dict:
    import soundfile

    samples, _ = soundfile.read(audio, dtype="float32")
    pipeline = pyannote_pipeline(backend, batch_size)
    time_pyannote(pipeline, samples[: round(WARM_UP_SECONDS * SAMPLE_RATE)])
    seconds = time_pyannote(pipeline, samples)
    return {"seconds": seconds, "audio_seconds": len(samples) / SAMPLE_RATE, "peak_rss_mb": peak_rss_mb()}


def _der(reference: Path | None, hypothesis: Annotation) -> float | None:
    if reference is None:
        return None
    from streamdiar.evaluation import diarization_error_rate, load_rttm

    uri = hypothesis.uri
    return diarization_error_rate({uri: load_rttm(reference)[uri]}, {uri: hypothesis}).der


def _models_ran_on(backend: object, mode: str) -> str:
    """What ran the models in `mode`: the runtime `auto` picked for it, or torch where the
    backend has no choice or a runtime could not run them (on CUDA graphs, and with CAM++ in
    float16, where it ran so)."""
    compiled_models = getattr(backend, "compiled_models", None)
    compiled = compiled_models(shared=mode == "file") if compiled_models else None
    if compiled is not None:
        return compiled.runtime_name
    torch_on = "torch on CUDA graphs" if getattr(backend, "cuda_graph_shapes", None) else "torch"
    return f"{torch_on}, CAM++ float16" if getattr(backend, "float16_trunk", False) else torch_on


def measure(args: argparse.Namespace) -> dict:
    from threadpoolctl import threadpool_limits

    from streamdiar.session import file_batch_size, load_backend

    models = model_source(args) if args.backend == "pyannote" else None
    backend, _ = load_backend(args.backend, args.device, models)
    threadpool_limits(1, user_api="blas")  # as `streamdiar diarize` runs the clustering
    if args.mode == "streaming":
        batch_size = 1
    else:
        batch_size = file_batch_size(backend) if args.batch_size is None else args.batch_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.mode == "pyannote.audio":
            result = _pyannote_audio(backend, args.audio, batch_size)
        else:
            result = _diarize(backend, args.audio, args.mode, batch_size, args.reference)
    return {
        "backend": args.backend,
        "device": backend.device.type,
        "runtime": getattr(backend, "runtime", "torch"),  # as asked ($STREAMDIAR_RUNTIME)
        "models_ran_on": _models_ran_on(backend, args.mode),
        "mode": args.mode,
        "batch_size": batch_size,
        **result,
        "rtf": result["seconds"] / result["audio_seconds"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    fix_mmap_threshold()  # as `streamdiar` does
    parser = argparse.ArgumentParser(prog="python -m streamdiar.cli.bench_run", description=__doc__)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--reference", type=Path, help="reference RTTM, for the DER")
    parser.add_argument("--mode", choices=MODES, default="file")
    parser.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0])
    add_model_flags(parser)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, help="default: chosen for the device")
    print(json.dumps(measure(parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
