"""Stitcher on synthetic local speakers: window by window, as the pipeline feeds it (no models)."""

import itertools
import math
from collections import defaultdict, deque

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamdiar.core.clustering import Assignment, OnlineClustering
from streamdiar.core.stitching import Stitcher, speaker_name
from streamdiar.core.types import LocalSpeakers, Turn

WINDOW, STEP, FRAME = 2.0, 0.25, 0.032
FRAMES = int(WINDOW / FRAME)  # 62 frames per window
DIM = 32
EPS = 1e-9


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def directions(count: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, DIM))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class Truth:
    """Who speaks when: per speaker, sorted disjoint [start, end) intervals in seconds."""

    def __init__(self, intervals: dict[int, list[tuple[float, float]]], duration: float) -> None:
        self.duration = duration
        self.speakers = sorted(intervals)
        self._bounds = {s: np.array([t for span in intervals[s] for t in span]) for s in self.speakers}

    def __repr__(self) -> str:
        spans = {s: [tuple(map(float, pair)) for pair in self._bounds[s].reshape(-1, 2)] for s in self.speakers}
        return f"Truth({spans!r}, {self.duration!r})"

    def speaking(self, speaker: int, times: np.ndarray) -> np.ndarray:
        """(len(times),) bool: does `speaker` talk at these times (s)?"""
        inside = np.searchsorted(self._bounds[speaker], times, side="right") % 2 == 1
        return inside & (times < self.duration)

    @classmethod
    def from_segments(cls, segments: list[tuple[int | None, float]]) -> "Truth":
        """Back to back (speaker or None for silence, seconds) segments: one speaker at a time."""
        intervals: dict[int, list[tuple[float, float]]] = defaultdict(list)
        t = 0.0
        for speaker, length in segments:
            if speaker is not None:
                intervals[speaker].append((t, t + length))
            t += length
        return cls(dict(intervals), t)


def window_spans(duration: float) -> list[tuple[int, float, float]]:
    """(index, start, valid_end) of the windows a Windower cuts from `duration` s of audio."""
    spans = []
    i = 0
    while i * STEP + WINDOW <= duration + EPS:
        spans.append((i, i * STEP, i * STEP + WINDOW))
        i += 1
    if duration > 0 and (not spans or spans[-1][2] < duration - EPS):
        spans.append((i, i * STEP, duration))
    return spans


def local_speakers(
    truth: Truth,
    start: float,
    valid_end: float,
    dirs: np.ndarray,
    rng: np.random.Generator,
    slots: int = 2,
    noise: float = 0.05,
) -> tuple[LocalSpeakers, list[int | None]]:
    """What an ideal backend would report for one window: the speakers heard, in a random local
    order, each active once it talks 3 frames or more. Returns also the speaker of each slot.

    With one slot, like the embedded backend: the column is speech activity whoever talks, and
    the vector a mix of the voices heard, weighted by how long each talks."""
    times = start + (np.arange(FRAMES) + 0.5) * FRAME
    if slots == 1:
        talking = np.stack([truth.speaking(s, times) & (times < valid_end) for s in truth.speakers])
        talking = talking[[s < len(dirs) for s in truth.speakers]]  # (speakers, frames)
        speech = talking.any(axis=0) if len(talking) else np.zeros(FRAMES, dtype=bool)
        activity = np.where(speech, 0.9, 0.05) + rng.uniform(-noise, noise, FRAMES)
        activity[times >= valid_end] = 0.0
        weights = talking.sum(axis=1) if len(talking) else np.zeros(0)
        active = speech.sum() >= 3
        embeddings = np.full((1, DIM), np.nan, dtype=np.float32)
        if active:
            mix = weights @ dirs[: len(weights)] / weights.sum()
            embeddings[0] = mix + 0.2 * rng.normal(size=DIM) / math.sqrt(DIM)
        owner = int(np.argmax(weights)) if active else None
        local = LocalSpeakers(np.clip(activity, 0, 1)[:, None].astype(np.float32), embeddings, np.array([active]), FRAME)
        return local, [owner]
    heard = [s for s in truth.speakers if truth.speaking(s, times).any() and s < len(dirs)]
    heard = list(rng.permutation(heard))[:slots]
    activity = np.zeros((FRAMES, slots), dtype=np.float32)
    embeddings = np.full((slots, DIM), np.nan, dtype=np.float32)
    active = np.zeros(slots, dtype=bool)
    owners: list[int | None] = [None] * slots
    for k, speaker in enumerate(heard):
        talking = truth.speaking(int(speaker), times) & (times < valid_end)
        activity[:, k] = np.where(talking, 0.9, 0.05) + rng.uniform(-noise, noise, FRAMES)
        activity[times >= valid_end, k] = 0.0  # zero padding is silence
        owners[k] = int(speaker)
        if talking.sum() >= 3:
            active[k] = True
            vector = dirs[speaker] + 0.2 * rng.normal(size=DIM) / math.sqrt(DIM)
            embeddings[k] = vector
    return (
        LocalSpeakers(np.clip(activity, 0.0, 1.0), embeddings, active, FRAME),
        owners,
    )


class OracleClustering:
    """Stands in for OnlineClustering: labels a local speaker by its nearest true direction,
    and, when given a generator, now and then relabels a recent local speaker at random (as
    the real clustering may) to stress the stitcher."""

    def __init__(self, dirs: np.ndarray, rng: np.random.Generator | None = None) -> None:
        self.dirs = dirs
        self.rng = rng
        self.recent: deque[tuple[int, int]] = deque(maxlen=30)

    @property
    def num_speakers(self) -> int:
        return len(self.dirs)

    def assign(self, window_index: int, embeddings: np.ndarray, active: np.ndarray) -> Assignment:
        labels = np.full(len(active), -1, dtype=int)
        for k in np.flatnonzero(active):
            labels[k] = int(np.argmax(self.dirs @ embeddings[k]))
        relabels = {}
        if self.rng is not None and self.recent and self.rng.random() < 0.3:
            key = self.recent[int(self.rng.integers(len(self.recent)))]
            relabels[key] = int(self.rng.integers(len(self.dirs)))
        self.recent.extend((window_index, int(k)) for k in np.flatnonzero(active))
        return Assignment(labels, relabels)


class Checked:
    """Drives a Stitcher and checks, after every call, what may never happen."""

    def __init__(
        self, stitcher: Stitcher, window: float = WINDOW, step: float = STEP, audio_slack: float = 0.0
    ) -> None:
        self.stitcher = stitcher
        self.audio_slack = audio_slack  # s a turn may reach past the audio seen (see below)
        self.turns: list[Turn] = []  # everything returned, in order
        self.copies: list[tuple[float, float, str]] = []
        self.seen_end = 0.0
        self.committed = 0.0
        self.held_limit = (window + stitcher.latency) / step + 2
        self.max_held = 0
        self.min_gap_frames = stitcher.min_gap_frames

    def push(self, index: int, start: float, valid_end: float, local: LocalSpeakers) -> list[Turn]:
        open_before = {speaker_name(g): span[0] for g, span in self.stitcher._open.items()}
        committed_before = self.committed
        turns = self.stitcher.push(index, start, valid_end, local)
        self.seen_end = max(self.seen_end, valid_end)
        self._check(turns, open_before, committed_before)
        # a frame at time t is final only once audio up to t + latency was seen
        assert self.stitcher.committed_until <= max(0.0, self.seen_end - self.stitcher.latency) + EPS
        self.max_held = max(self.max_held, self.stitcher.held_windows)
        assert self.stitcher.held_windows <= self.held_limit
        return turns

    def flush(self) -> list[Turn]:
        open_before = {speaker_name(g): span[0] for g, span in self.stitcher._open.items()}
        turns = self.stitcher.flush()
        self._check(turns, open_before, self.committed)
        assert self.stitcher.committed_until >= self.seen_end - EPS, "flush commits all audio seen"
        assert self.stitcher.open_speakers() == [] and not self.stitcher._open
        return turns

    def _check(self, turns: list[Turn], open_before: dict[str, int], committed_before: float) -> None:
        now = self.stitcher.committed_until
        assert now >= self.committed - EPS, "committed_until went back"
        self.committed = now
        for turn in turns:
            assert isinstance(turn, Turn)
            assert 0.0 <= turn.start < turn.end
            assert turn.duration >= self.stitcher.min_duration - EPS
            assert turn.end <= now + EPS, f"{turn} returned before being committed (until {now})"
            assert turn.end <= self.seen_end + self.audio_slack + EPS, (
                f"{turn} ends past the audio seen ({self.seen_end} s)"
            )
            if turn.start < committed_before - EPS:
                # it covers frames that were final before this call: it must be the turn that
                # was open then, with the start it had then
                assert turn.speaker in open_before, f"{turn} rewrites frames committed earlier"
                assert turn.start == pytest.approx(open_before[turn.speaker] * self.stitcher.frame_step)
        # turns already returned never change, and nothing is returned twice
        assert [(t.start, t.end, t.speaker) for t in self.turns] == self.copies
        assert not set(turns) & set(self.turns), "a turn was returned twice"
        self.turns.extend(turns)
        self.copies.extend((t.start, t.end, t.speaker) for t in turns)
        self._check_per_speaker()

    def _check_per_speaker(self) -> None:
        by_speaker: dict[str, list[Turn]] = defaultdict(list)
        for turn in self.turns:
            by_speaker[turn.speaker].append(turn)
        gap = (self.min_gap_frames + 1) * self.stitcher.frame_step
        # with room for every speaker at once, no other voice can cut a pause short
        never_crowded = self.stitcher.max_speakers_per_frame >= self.stitcher.clustering.num_speakers
        for speaker, turns in by_speaker.items():
            for previous, turn in zip(turns, turns[1:]):
                assert previous.end <= turn.start, f"{speaker}: {turn} overlaps {previous}"
                if never_crowded and isinstance(self.stitcher.clustering, OracleClustering):
                    # pauses up to min_gap are bridged: two turns of one speaker lie further apart
                    assert turn.start - previous.end >= gap - 1e-6, f"{speaker}: {previous}, {turn}"

    def overlapping_turns_of_different_speakers(self) -> list[tuple[Turn, Turn]]:
        ordered = sorted(self.turns, key=lambda t: t.start)
        return [
            (a, b)
            for a, b in itertools.combinations(ordered, 2)
            if a.speaker != b.speaker and a.start < b.end - EPS and b.start < a.end - EPS
        ]


def run(
    truth: Truth,
    stitcher: Stitcher,
    dirs: np.ndarray,
    seed: int = 0,
    slots: int = 2,
    noise: float = 0.05,
    audio_slack: float = 0.0,
) -> Checked:
    rng = np.random.default_rng(seed)
    checked = Checked(stitcher, audio_slack=audio_slack)
    for index, start, valid_end in window_spans(truth.duration):
        local, _ = local_speakers(truth, start, valid_end, dirs, rng, slots, noise)
        checked.push(index, start, valid_end, local)
    checked.flush()
    return checked


def frame_accuracy(truth: Truth, turns: list[Turn], frame: float = FRAME, since: float = 0.0) -> float:
    """Fraction of frames (from `since` s on) whose set of speakers is right, under the best
    mapping of names."""
    centres = (np.arange(int(truth.duration / frame)) + 0.5) * frame
    centres = centres[centres >= since]
    true = np.stack([truth.speaking(s, centres) for s in truth.speakers], axis=1)  # (frames, S)
    names = sorted({t.speaker for t in turns})
    found = np.zeros((len(centres), len(names)), dtype=bool)  # (frames, names)
    for turn in turns:
        found[(centres >= turn.start) & (centres < turn.end), names.index(turn.speaker)] = True
    best = 0.0
    targets = list(range(len(truth.speakers))) + [None] * len(names)
    for perm in set(itertools.permutations(targets, len(names))):
        mapped = np.zeros_like(true)
        extra = np.zeros(len(centres), dtype=bool)
        for column, target in enumerate(perm):
            if target is None:
                extra |= found[:, column]
            else:
                mapped[:, target] |= found[:, column]
        best = max(best, float(np.mean((mapped == true).all(axis=1) & ~extra)))
    return best


def conversation(seed: int, duration: float, speakers: int = 2) -> Truth:
    """Turns of 1 to 4 s, one speaker at a time, with pauses of 0.3 to 1 s now and then."""
    rng = np.random.default_rng(seed)
    segments: list[tuple[int | None, float]] = []
    speaker = 0
    total = 0.0
    while total < duration:
        length = float(rng.uniform(1.0, 4.0))
        segments.append((speaker, length))
        total += length
        if rng.random() < 0.5:
            pause = float(rng.uniform(0.3, 1.0))
            segments.append((None, pause))
            total += pause
        speaker = (speaker + int(rng.integers(1, speakers))) % speakers
    truth = Truth.from_segments(segments)
    truth.duration = duration
    return truth


def test_recovered_timeline_matches_the_truth_with_the_real_clustering():
    truth = conversation(seed=1, duration=40.0)
    dirs = directions(2, seed=1)
    stitcher = Stitcher(OnlineClustering(buffer_size=100), FRAME, latency=2.0)
    checked = run(truth, stitcher, dirs, seed=1)
    assert {t.speaker for t in checked.turns} == {"SPEAKER_00", "SPEAKER_01"}
    accuracy = frame_accuracy(truth, checked.turns)
    assert accuracy >= 0.9, f"{accuracy:.1%} of frames right"
    assert checked.overlapping_turns_of_different_speakers() == []


def test_three_speakers_one_local_speaker_per_window():
    truth = conversation(seed=2, duration=30.0, speakers=3)
    dirs = directions(3, seed=2)
    stitcher = Stitcher(OnlineClustering(buffer_size=60), FRAME, latency=2.0)
    checked = run(truth, stitcher, dirs, seed=2, slots=1)
    assert len({t.speaker for t in checked.turns}) == 3
    # One local speaker per window, as with the embedded backend: a window across a change of
    # speaker gets one label for all its speech, and a new voice needs min_evidence windows
    # before it is a speaker, so the first seconds (all three voices new) are judged apart.
    accuracy = frame_accuracy(truth, checked.turns, since=10.0)
    assert accuracy >= 0.85, f"{accuracy:.1%} of frames right after 10 s"
    assert frame_accuracy(truth, checked.turns) >= 0.7
    assert checked.overlapping_turns_of_different_speakers() == []


def test_turns_come_out_while_the_stream_goes_on_and_flush_closes_the_rest():
    # A talks 0-6 s, B 6.5-13 s, A from 13.5 s to the end (20 s): A is talking when it ends
    truth = Truth({0: [(0.0, 6.0), (13.5, 20.0)], 1: [(6.5, 13.0)]}, 20.0)
    dirs = directions(2, seed=3)
    rng = np.random.default_rng(3)
    checked = Checked(Stitcher(OracleClustering(dirs), FRAME, latency=2.0))
    returned_at: list[tuple[Turn, float]] = []
    for index, start, valid_end in window_spans(truth.duration):
        local, _ = local_speakers(truth, start, valid_end, dirs, rng)
        for turn in checked.push(index, start, valid_end, local):
            returned_at.append((turn, valid_end))
        if 4.0 <= checked.stitcher.committed_until < 6.0:
            assert checked.stitcher.open_speakers() == ["SPEAKER_00"]
        if 9.0 <= checked.stitcher.committed_until < 12.0:
            assert checked.stitcher.open_speakers() == ["SPEAKER_01"]
    assert [t.speaker for t, _ in returned_at] == ["SPEAKER_00", "SPEAKER_01"]
    # a turn is out once the pause after it is longer than min_gap and `latency` s old
    for turn, when in returned_at:
        assert when <= turn.end + (checked.min_gap_frames + 2) * FRAME + 2.0 + STEP + EPS
    assert checked.stitcher.open_speakers() == ["SPEAKER_00"]
    last = checked.flush()
    assert [t.speaker for t in last] == ["SPEAKER_00"]
    assert last[0].start == pytest.approx(13.5, abs=2 * FRAME)
    assert last[0].end == pytest.approx(20.0, abs=2 * FRAME)
    expected = [(0.0, 6.0, "SPEAKER_00"), (6.5, 13.0, "SPEAKER_01"), (13.5, 20.0, "SPEAKER_00")]
    for turn, (start, end, speaker) in zip(checked.turns, expected):
        assert turn.speaker == speaker
        assert turn.start == pytest.approx(start, abs=2 * FRAME)
        assert turn.end == pytest.approx(end, abs=2 * FRAME)
    assert checked.stitcher.flush() == [], "a second flush has nothing left"


def test_nothing_is_committed_before_latency_seconds_of_audio_follow_it():
    truth = Truth({0: [(0.0, 30.0)]}, 30.0)
    dirs = directions(2, seed=4)
    for latency in (0.5, 2.0, 5.0):
        checked = run(truth, Stitcher(OracleClustering(dirs), FRAME, latency=latency), dirs, seed=4)
        assert [(t.start, t.speaker) for t in checked.turns] == [(0.0, "SPEAKER_00")]
        assert checked.turns[0].end == pytest.approx(30.0, abs=FRAME)


def test_held_windows_stay_bounded_over_ten_minutes():
    truth = conversation(seed=5, duration=600.0)
    dirs = directions(2, seed=5)
    stitcher = Stitcher(OracleClustering(dirs, np.random.default_rng(5)), FRAME, latency=2.0)
    checked = run(truth, stitcher, dirs, seed=5)
    assert checked.max_held <= (WINDOW + 2.0) / STEP + 2
    assert checked.stitcher.held_windows <= (WINDOW + 2.0) / STEP + 2
    assert len(checked.turns) > 100
    assert frame_accuracy(truth, checked.turns) >= 0.85  # despite random relabels


def test_short_interjection_with_one_speaker_per_frame_gives_no_overlapping_turns():
    """A talks, B says something short (less than min_gap), A goes on: with at most one
    speaker per frame, the turns handed out must not overlap in time."""
    truth = Truth({0: [(0.0, 3.0), (3.16, 6.0)], 1: [(3.0, 3.16)]}, 6.0)
    dirs = directions(2, seed=6)
    checked = run(truth, Stitcher(OracleClustering(dirs), FRAME, latency=2.0), dirs, seed=6)
    assert {t.speaker for t in checked.turns} == {"SPEAKER_00", "SPEAKER_01"}
    assert checked.overlapping_turns_of_different_speakers() == []


@st.composite
def activity_patterns(draw, longest: float = 20.0):
    """Random talk of 1 to 3 speakers over up to `longest` s, overlaps and pauses of any length."""
    speakers = draw(st.integers(1, 3))
    duration = draw(st.floats(0.05, longest))
    intervals = {}
    for s in range(speakers):
        lengths = draw(st.lists(st.floats(0.02, 3.0), min_size=1, max_size=16))
        t = draw(st.floats(0.0, 2.0))
        spans = []
        for i, length in enumerate(lengths):
            if i % 2 == 0:
                spans.append((t, t + length))
            t += length
        intervals[s] = spans
    return Truth(intervals, duration), draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    activity_patterns(),
    st.sampled_from([0.5, 1.0, 2.0, 5.0]),
    st.sampled_from([1, 2, 3]),
    st.sampled_from([1, 2, 3]),
)
def test_invariants_hold_for_any_activity(case, latency, per_frame, slots):
    truth, seed = case
    dirs = directions(3, seed=seed)
    clustering = OracleClustering(dirs, np.random.default_rng(seed))
    stitcher = Stitcher(clustering, FRAME, latency=latency, max_speakers_per_frame=per_frame)
    # flush may end a turn up to half a frame past the audio: shown, and reported, by
    # test_a_turn_never_ends_past_the_end_of_the_audio; the other invariants are checked here
    checked = run(truth, stitcher, dirs, seed=seed, slots=slots, noise=0.3, audio_slack=FRAME / 2)
    if per_frame == 1:
        assert checked.overlapping_turns_of_different_speakers() == []


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(activity_patterns(longest=10.0))
def test_invariants_hold_with_the_real_clustering(case):
    truth, seed = case
    dirs = directions(3, seed=seed)
    stitcher = Stitcher(OnlineClustering(buffer_size=30), FRAME, latency=2.0)
    checked = run(truth, stitcher, dirs, seed=seed, slots=2, noise=0.3, audio_slack=FRAME / 2)
    assert checked.overlapping_turns_of_different_speakers() == []  # max_speakers_per_frame=1


@pytest.mark.parametrize("duration", [0.5, 3.35, 5.01, 7.3, 10.0])
def test_a_turn_never_ends_past_the_end_of_the_audio(duration):
    """One speaker talks to the very end of the stream. flush() commits frames up to
    ceil(seen_end / frame_step), so the last frame may reach past the audio; a turn must still
    end where the audio does, not on the frame grid beyond it."""
    truth = Truth({0: [(0.0, duration)]}, duration)
    dirs = directions(2, seed=7)
    checked = run(truth, Stitcher(OracleClustering(dirs), FRAME, latency=2.0), dirs, seed=7)
    (turn,) = checked.turns
    assert turn.start == 0.0
    assert duration - 2 * FRAME <= turn.end <= duration + EPS
