"""Voiceprints of one person from recordings of them: the speech found by the backend's own
segmentation (or, with a reference RTTM, that person's turns), cut into windows of the
backend's length, one voiceprint per window."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from streamdiar.core.backend import Backend
from streamdiar.core.packaged_models import CAMPPLUS_WEIGHTS_FILE, DIGESTS
from streamdiar.core.types import SAMPLE_RATE
from streamdiar.core.voiceprints import window_voiceprint
from streamdiar.speaker_store import EnrolmentError
from streamdiar.stream.sources import file_blocks
from streamdiar.stream.windows import Windower

Span = tuple[float, float]  # (start, end) in seconds

# voiceprints come from the default backend's models: CAM++ is a speaker-verification model
ENROLMENT_BACKEND = "campplus"

# a voiceprint's speech below this is left out: the last window of the speech, when it is short
MIN_WINDOW_SPEECH = 2.0  # s


def voiceprint_model(backend_name: str) -> str:
    """The name of the model whose vectors a backend's voiceprints are: for the default
    backend, whose weights are pinned, the encoder's release and digest."""
    if backend_name == "campplus":
        return f"campplus_cn_en_common sha256:{DIGESTS[CAMPPLUS_WEIGHTS_FILE][:16]}"
    return backend_name


def read_samples(path: Path) -> np.ndarray:
    """The whole file as (samples,) float32 mono at SAMPLE_RATE: enrolment clips are short."""

    async def collected() -> list[np.ndarray]:
        return [block async for block in file_blocks(path)]

    blocks = asyncio.run(collected())
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def cut(samples: np.ndarray, spans: Sequence[Span]) -> np.ndarray:
    """The samples (n,) of `spans`, joined end to end."""
    pieces = [samples[round(s * SAMPLE_RATE) : round(e * SAMPLE_RATE)] for s, e in spans]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def voiceprints(backend: Backend, samples: np.ndarray, batch_size: int = 4) -> np.ndarray:
    """Voiceprints (n, dim) of the main voice of each window of `samples` (n,), windows of the
    backend's length side by side; (0, dim) or fewer rows where there is too little speech."""
    windower = Windower(backend.window_duration, backend.window_duration)
    windows = [
        w.samples
        for w in windower.push(samples) + windower.finish()
        if w.valid >= MIN_WINDOW_SPEECH * SAMPLE_RATE
    ]  # each (window samples,)
    found = []
    for first in range(0, len(windows), batch_size):
        batch = torch.from_numpy(np.stack(windows[first : first + batch_size]))
        for local in backend.infer(batch):
            vector = window_voiceprint(local)
            if vector is not None:
                found.append(vector)
    return np.stack(found) if found else np.zeros((0, 0))


def reference_spans(rttm: Path, uri: str, label: str) -> list[Span]:
    """The turns of `label` in file `uri` of a reference RTTM, less where others talk too."""
    from streamdiar.evaluation import load_rttm  # pyannote.metrics takes seconds to import

    annotation = load_rttm(rttm).get(uri)
    if annotation is None or label not in annotation.labels():
        raise EnrolmentError(f"{rttm} has no turns of {label} in {uri}")
    others = annotation.subset([label], invert=True).get_timeline().support()
    alone = annotation.label_timeline(label).support().extrude(others)
    return [(segment.start, segment.end) for segment in alone]


def first_speech(spans: Sequence[Span], seconds: float) -> list[Span]:
    """The beginning of `spans` that holds `seconds` of speech, the last span cut short."""
    kept: list[Span] = []
    left = seconds
    for start, end in spans:
        if left <= 0:
            break
        kept.append((start, min(end, start + left)))
        left -= kept[-1][1] - start
    return kept
