"""From per-window local speakers to committed global turns.

Each window's local speakers get global labels from the clustering; the activity of all held
windows that cover a frame is averaged per global speaker; a frame is committed once the audio
seen reaches `latency` seconds past it. Committed frames are never revisited, so a turn, once
emitted, never changes. Only windows that still cover uncommitted frames are held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamdiar.core.clustering import Assignment, LocalKey, OnlineClustering
from streamdiar.core.types import LocalSpeakers, Turn
from streamdiar.core.voiceprints import Naming, SpeakerNamer


def speaker_name(label: int) -> str:
    return f"SPEAKER_{label:02d}"


@dataclass
class _HeldWindow:
    index: int
    start: float  # s
    valid_end: float  # s, end of the real audio in the window
    local: LocalSpeakers
    labels: np.ndarray  # (K,) global label per local speaker, -1 if inactive


class Stitcher:
    """Aggregates overlapping windows and commits frames once they are `latency` s old.

    frame_step: resolution (s) of the committed timeline.
    max_speakers_per_frame: the most speakers active at once (the backend's local speakers).
    speech_threshold: a speaker is active in a frame when their averaged activity exceeds it;
        when no single speaker does but the frame holds speech, the strongest speaker is
        active (a backend with one local speaker per window splits a frame's speech between
        labels where windows disagree), or, when no window could say who, the last speaker.
    min_gap: pauses shorter than this inside one speaker's speech do not end the turn, unless
        another speaker talks in the pause beyond what `max_speakers_per_frame` allows.
    min_duration: shorter turns are dropped.
    namer: names global speakers after enrolled people; a turn carries the name its speaker
        has when the turn is emitted, and `namings` lists the names given so far.
    """

    def __init__(
        self,
        clustering: OnlineClustering,
        frame_step: float,
        latency: float = 2.0,
        max_speakers_per_frame: int = 1,
        speech_threshold: float = 0.5,
        min_gap: float = 1.0,
        min_duration: float = 0.1,
        namer: SpeakerNamer | None = None,
    ) -> None:
        self.clustering = clustering
        self.namer = namer
        self.namings: list[Naming] = []
        self.frame_step = frame_step
        self.latency = latency
        self.max_speakers_per_frame = max_speakers_per_frame
        self.speech_threshold = speech_threshold
        self.min_gap_frames = round(min_gap / frame_step)
        self.min_duration = min_duration
        self._held: list[_HeldWindow] = []
        self._committed = 0  # frames [0, _committed) are final
        self._seen_end = 0.0  # s, end of the audio seen so far
        self._open: dict[int, list[int]] = {}  # label -> [first frame, last active frame]
        self._last_speaker = -1  # label of the most recent active frame

    @property
    def committed_until(self) -> float:
        """Time (s) up to which the timeline is final."""
        return self._committed * self.frame_step

    @property
    def held_windows(self) -> int:
        return len(self._held)

    def open_speakers(self) -> list[str]:
        """Speakers whose current turn is still open (talking at the commit point)."""
        last = self._committed - 1
        return [self._speaker(g) for g, (_, end) in sorted(self._open.items()) if end == last]

    def open_turns(self) -> list[Turn]:
        """The committed part of each turn not closed yet: what a transcript aligner needs to
        label speech before its turn ends (the turn emitted later starts the same)."""
        return [
            Turn(first * self.frame_step, (last + 1) * self.frame_step, self._speaker(g))
            for g, (first, last) in sorted(self._open.items())
        ]

    def push(self, index: int, start: float, valid_end: float, local: LocalSpeakers) -> list[Turn]:
        """Add one window's result (in stream order); return the turns this commits."""
        assignment = self.clustering.assign(index, local.embeddings, local.active)
        self._apply(assignment.relabels)
        self._held.append(_HeldWindow(index, start, valid_end, local, assignment.labels))
        if self.namer is not None:
            held = ((w.labels, w.local.embeddings) for w in self._held)
            for label, name in self.namer.update(held):
                self.namings.append(Naming(speaker_name(label), name, self.committed_until))
        self._seen_end = max(self._seen_end, valid_end)
        if math.isinf(self.latency):
            return []
        return self._commit(math.floor((self._seen_end - self.latency) / self.frame_step + 1e-9))

    def relabel(self, labels: dict[LocalKey, int]) -> None:
        """Give held local speakers new global labels (uncommitted frames only change)."""
        self._apply(labels)

    def flush(self) -> list[Turn]:
        """Commit everything seen and close all turns: the end of the stream."""
        turns = self._commit(math.ceil(self._seen_end / self.frame_step - 1e-9))
        for label in sorted(self._open):
            turns.extend(self._close(label))
        return turns

    def _speaker(self, label: int) -> str:
        """The name of global speaker `label`: an enrolled person's, else SPEAKER_NN."""
        name = self.namer.name_of(label) if self.namer is not None else None
        return speaker_name(label) if name is None else name

    def _apply(self, labels: dict[LocalKey, int]) -> None:
        for window in self._held:
            for k in range(len(window.labels)):
                if (window.index, k) in labels:
                    window.labels[k] = labels[window.index, k]

    def _scores(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-speaker activity (frames, speakers) of frames [first, last), and the speech
        probability (frames,) whoever speaks.

        A window votes on who speaks in a frame when it labelled a local speaker there, or
        when it hears no speech there; speech it could not attribute (too short to embed, or
        a voice not yet promoted to a speaker) counts only towards the speech probability.
        """
        num_speakers = max(
            [self.clustering.num_speakers] + [int(w.labels.max()) + 1 for w in self._held]
        )
        total = np.zeros((last - first, max(num_speakers, 1)))
        voters = np.zeros(last - first)
        speech = np.zeros(last - first)
        count = np.zeros(last - first)
        centres = (np.arange(first, last) + 0.5) * self.frame_step  # (frames,) s
        for window in self._held:
            local_index = np.floor((centres - window.start) / window.local.frame_step).astype(int)
            inside = np.flatnonzero(
                (local_index >= 0)
                & (local_index < len(window.local.activity))
                & (centres < window.valid_end)
            )
            if len(inside) == 0:
                continue
            rows = window.local.activity[local_index[inside]]  # (covered, K)
            heard = rows.max(axis=1)  # (covered,)
            count[inside] += 1
            speech[inside] += heard
            labelled = window.labels >= 0
            votes = labelled.any() | (heard <= self.speech_threshold)
            voters[inside[votes]] += 1
            for k in np.flatnonzero(labelled):
                total[inside[votes], window.labels[k]] += rows[votes, k]
        return total / np.maximum(voters, 1)[:, None], speech / np.maximum(count, 1)

    def _commit(self, until: int) -> list[Turn]:
        if until <= self._committed:
            return []
        first = self._committed
        scores, speech = self._scores(first, until)  # (frames, speakers), (frames,)
        ranked = np.argsort(-scores, axis=1)[:, : self.max_speakers_per_frame]  # (frames, K)
        ranked_scores = np.take_along_axis(scores, ranked, axis=1)  # (frames, K)
        turns: list[Turn] = []
        # frame by frame from Python lists: an hour has 213,000 frames, and reading numpy
        # scalars one at a time cost most of its stitching
        frames = zip(ranked.tolist(), ranked_scores.tolist(), speech.tolist())
        threshold = self.speech_threshold
        for offset, (labels, label_scores, heard) in enumerate(frames):
            frame = first + offset
            speakers = [g for g, score in zip(labels, label_scores) if score > threshold]
            if not speakers and heard > threshold:
                speakers = [labels[0]] if label_scores[0] > 0 else []
                if not speakers and self._last_speaker >= 0:
                    speakers = [self._last_speaker]
            if speakers:
                self._last_speaker = speakers[0]
            for label in speakers:
                span = self._open.setdefault(label, [frame, frame])
                span[1] = frame
            paused = [g for g, (_, end) in self._open.items() if end < frame]
            crowded = len(self._open) > self.max_speakers_per_frame and len(speakers) > 0
            for label in paused:
                if crowded or frame - self._open[label][1] > self.min_gap_frames:
                    turns.extend(self._close(label))
        self._committed = until
        until_time = until * self.frame_step
        held = []
        for window in self._held:
            if window.start + window.local.frame_step * len(window.local.activity) > until_time:
                held.append(window)
            elif self.namer is not None:  # its labels are final
                self.namer.retire(window.labels, window.local.embeddings)
        self._held = held
        return sorted(turns, key=lambda t: (t.start, t.speaker))

    def _close(self, label: int) -> list[Turn]:
        first, last = self._open.pop(label)
        end = min((last + 1) * self.frame_step, self._seen_end)  # the last frame may be partial
        turn = Turn(first * self.frame_step, end, self._speaker(label))
        return [turn] if turn.duration >= self.min_duration else []
