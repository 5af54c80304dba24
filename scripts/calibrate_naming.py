"""Calibrates the similarity threshold that names speakers after enrolled people.

The two voices of sample.wav are enrolled from their first 8 s of speech (cut by sample.rttm),
as the tests do. Then sample.wav (the same people) and dev00.wav, dev01.wav (four others)
are diarized, streamed, once per threshold, and for each the script prints: the highest
similarity each file's speakers reached to each person, the sample.stm utterances named right,
and the share of the impostor files' speech that got a name (the false-acceptance rate).

    .venv/bin/python scripts/calibrate_naming.py [--data ../shared/data/dev]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from streamdiar.core.types import Turn
from streamdiar.core.voiceprints import SpeakerNamer
from streamdiar.enrolment import cut, first_speech, read_samples, reference_spans, voiceprints
from streamdiar.session import build_diarizer, load_backend
from streamdiar.stream.windows import Windower

PEOPLE = {"Diane": "speaker90", "Sheila": "speaker91"}  # sample.stm's names, sample.rttm's labels
THRESHOLDS = [0.55, 0.6, 0.65, 0.7, 0.75]


class RecordingNamer(SpeakerNamer):
    """A namer that also keeps the highest similarity each speaker reached to each person."""

    def __init__(self, people: dict[str, np.ndarray], min_vectors: int, threshold: float) -> None:
        super().__init__(people, min_vectors, threshold)
        self.highest: dict[tuple[int, str], float] = {}

    def similarities(self, held):
        held = list(held)
        candidates, free, similarity = super().similarities(held)
        for row, label in enumerate(candidates):
            for col, person in enumerate(free):
                key = (label, person)
                self.highest[key] = max(self.highest.get(key, -1.0), float(similarity[row, col]))
        return candidates, free, similarity


def inferred_windows(backend, samples: np.ndarray):
    """(window, local speakers) of every window of the stream, the model run once."""
    windower = Windower(backend.window_duration, backend.window_step)
    windows = windower.push(samples) + windower.finish()
    results = []
    for first in range(0, len(windows), 4):
        batch = windows[first : first + 4]
        results += backend.infer(torch.from_numpy(np.stack([w.samples for w in batch])))
    return list(zip(windows, results))


def diarized(backend, windows, namer: SpeakerNamer) -> list[Turn]:
    stitcher = build_diarizer(backend, 2.0, namer=namer).stitcher
    turns = []
    for window, local in windows:
        turns += stitcher.push(window.index, window.start, window.valid_end, local)
    return turns + stitcher.flush()


def named_right(turns: list[Turn], stm: Path) -> int:
    """sample.stm utterances whose speaker over most of their time is the right name."""
    right = 0
    for line in stm.read_text().splitlines():
        _, _, name, start, end = line.split()[:5]
        spoken: dict[str, float] = {}
        for turn in turns:
            overlap = min(turn.end, float(end)) - max(turn.start, float(start))
            if overlap > 0:
                spoken[turn.speaker] = spoken.get(turn.speaker, 0.0) + overlap
        right += bool(spoken) and max(spoken, key=spoken.__getitem__) == name
    return right


def named_share(turns: list[Turn], people: set[str]) -> float:
    total = sum(t.duration for t in turns)
    return sum(t.duration for t in turns if t.speaker in people) / max(total, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/dev"))
    data = parser.parse_args().data
    threadpool_limits(1, user_api="blas")
    backend, _ = load_backend("campplus", "cpu")
    sample = read_samples(data / "sample.wav")
    people = {}
    for name, label in PEOPLE.items():
        spans = reference_spans(data / "sample.rttm", "sample", label)
        people[name] = voiceprints(backend, cut(sample, first_speech(spans, 8.0)))
    files = {
        uri: inferred_windows(backend, read_samples(data / f"{uri}.wav"))
        for uri in ("sample", "dev00", "dev01")
    }
    for uri, windows in files.items():  # a namer that names nobody sees every speaker
        namer = RecordingNamer.for_step(people, backend.window_step, threshold=np.inf)
        diarized(backend, windows, namer)
        for (label, person), value in sorted(namer.highest.items()):
            print(f"{uri} SPEAKER_{label:02d} ~ {person}: highest similarity {value:.3f}")
    for threshold in THRESHOLDS:
        results = []
        for uri, windows in files.items():
            namer = SpeakerNamer.for_step(people, backend.window_step, threshold)
            turns = diarized(backend, windows, namer)
            if uri == "sample":
                right = named_right(turns, data / "sample.stm")
                results.append(f"sample.stm named right {right}/13")
            else:
                results.append(f"{uri} speech named {100 * named_share(turns, set(people)):.1f} %")
        print(f"threshold {threshold}: " + ", ".join(results))


if __name__ == "__main__":
    main()
