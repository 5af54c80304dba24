"""Voiceprints of enrolled people, and the naming of a stream's global speakers after them.

A voiceprint is one speaker vector (dim,) of the backend's encoder, pooled over the main voice
of one window exactly as the diarizer pools a local speaker, so that enrolment and diarization
compare like with like. A global speaker is named after a person when the cosine similarity of
the speaker's centroid (all the vectors that carried its label) and the person's centroid (the
mean of their unit voiceprints) reaches a threshold. Names are given one to one, by an optimal
assignment on the similarities, and never taken back: a label, once named, keeps its name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from streamdiar.core.types import LocalSpeakers

# Cosine similarity, in CAM++'s space, from which a speaker is taken to be an enrolled person.
# Calibrated on the dev set with scripts/calibrate_naming.py (sample.wav's two voices enrolled
# from their first 8 s of speech): their own speakers reach 0.93 and 0.96, while the four AMI
# voices of dev00/dev01 never pass 0.51. Lower thresholds name sample.wav's first speaker
# before its vectors settle (at 0.55-0.6 it takes the wrong name: 1 of 13 utterances right);
# 0.65 and 0.7 give 12 of 13, 0.75 names too late (9 of 13).
NAMING_THRESHOLD = 0.7
# windows' worth of a speaker's vectors needed before it is compared with the people, in
# seconds of window steps: 4 vectors of live windows 0.5 s apart, 1 of files' 10/3 s apart (with
# 4 of windows 1 s apart, sample.wav's first voices were named too late: 8 of 13 utterances right)
MIN_SPEAKER_SECONDS = 2.0
# seconds of speech of a window's main voice below which the window gives no voiceprint
MIN_VOICEPRINT_SPEECH = 1.0


def unit(vectors: np.ndarray) -> np.ndarray:
    """Vectors (..., dim) scaled to length 1."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def window_voiceprint(
    local: LocalSpeakers, min_speech: float = MIN_VOICEPRINT_SPEECH
) -> np.ndarray | None:
    """The unit vector (dim,) of the local speaker who talks most in the window, or None when
    nobody talks `min_speech` seconds."""
    if not local.active.any():
        return None
    speech = np.where(local.active, (local.activity > 0.5).sum(axis=0), 0)  # (K,) frames
    main = int(np.argmax(speech))
    if speech[main] * local.frame_step < min_speech:
        return None
    return unit(local.embeddings[main].astype(np.float64))


@dataclass(frozen=True)
class Naming:
    """Global speaker `label` (SPEAKER_NN) is the enrolled person `name`: every turn emitted
    from `time` (s, the stream's committed point then) on carries the name."""

    label: str
    name: str
    time: float


class SpeakerNamer:
    """Names a stream's global speakers after enrolled people, one to one, once and for good.

    people: name -> voiceprints (m, dim); min_vectors: a speaker's vectors needed before it is
    compared with them (`for_step`). The stitcher hands over each window's labels and
    vectors: `retire` those whose labels are final, `update` with those it still holds (whose
    labels the clustering may still change).
    """

    def __init__(
        self,
        people: dict[str, np.ndarray],
        min_vectors: int,
        threshold: float = NAMING_THRESHOLD,
    ) -> None:
        self.people = sorted(people)
        self._centroids = unit(np.stack([unit(people[p]).mean(axis=0) for p in self.people]))
        self.threshold = threshold
        self.min_vectors = min_vectors
        self._retired: dict[int, np.ndarray] = {}  # label -> (dim,) sum of final unit vectors
        self._retired_counts: dict[int, int] = {}
        self._names: dict[int, str] = {}  # label -> name, for good

    @classmethod
    def for_step(
        cls, people: dict[str, np.ndarray], step: float, threshold: float = NAMING_THRESHOLD
    ) -> "SpeakerNamer":
        """A namer for windows `step` s apart: MIN_SPEAKER_SECONDS of them before naming."""
        return cls(people, max(1, round(MIN_SPEAKER_SECONDS / step)), threshold)

    def name_of(self, label: int) -> str | None:
        return self._names.get(label)

    def retire(self, labels: np.ndarray, embeddings: np.ndarray) -> None:
        """One window's final labels (K,) and vectors (K, dim); -1 labels are skipped."""
        for k in np.flatnonzero(labels >= 0):
            label = int(labels[k])
            self._retired[label] = self._retired.get(label, 0.0) + unit(embeddings[k])
            self._retired_counts[label] = self._retired_counts.get(label, 0) + 1

    def update(self, held: Iterable[tuple[np.ndarray, np.ndarray]]) -> list[tuple[int, str]]:
        """Names given now to speakers without one: (label, name) pairs. `held`: the labels
        (K,) and vectors (K, dim) of the windows whose labels may still change."""
        candidates, free, similarity = self.similarities(held)
        named = []
        for row, col in zip(*linear_sum_assignment(-similarity)):
            if similarity[row, col] >= self.threshold:
                label, name = candidates[row], free[col]
                self._names[label] = name
                named.append((label, name))
        return named

    def similarities(
        self, held: Iterable[tuple[np.ndarray, np.ndarray]]
    ) -> tuple[list[int], list[str], np.ndarray]:
        """The speakers without a name who have enough vectors, the people not yet given, and
        the cosine similarity (speakers, people) of their centroids."""
        free = [person for person in self.people if person not in self._names.values()]
        if not free:
            return [], [], np.zeros((0, 0))
        sums = dict(self._retired)
        counts = dict(self._retired_counts)
        for labels, embeddings in held:
            for k in np.flatnonzero(labels >= 0):
                label = int(labels[k])
                sums[label] = sums.get(label, 0.0) + unit(embeddings[k])
                counts[label] = counts.get(label, 0) + 1
        candidates = [
            label
            for label in sorted(sums)
            if label not in self._names and counts[label] >= self.min_vectors
        ]
        if not candidates:
            return [], free, np.zeros((0, len(free)))
        speakers = unit(np.stack([sums[label] for label in candidates]))  # (c, dim)
        people = self._centroids[[self.people.index(p) for p in free]]  # (free, dim)
        return candidates, free, speakers @ people.T
