"""Naming global speakers after enrolled people (no models): the namer alone, then in the
stitcher on synthetic windows."""

import numpy as np
import pytest
from test_stitching import DIM, FRAME, conversation, directions, local_speakers, window_spans

from streamdiar.core.clustering import OnlineClustering
from streamdiar.core.stitching import Stitcher
from streamdiar.core.types import LocalSpeakers
from streamdiar.core.voiceprints import SpeakerNamer, window_voiceprint
from streamdiar.enrolment import first_speech

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def window(labels: list[int], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A held window's labels (K,) and vectors (K, dim)."""
    return np.array(labels), np.asarray(vectors, dtype=np.float32)


def test_a_speaker_close_to_a_person_is_named_once_with_enough_vectors():
    alice, bob = directions(2, seed=3)
    namer = SpeakerNamer({"Alice": alice[None], "Bob": bob[None]}, threshold=0.8, min_vectors=3)
    held = [window([0], alice[None])] * 2
    assert namer.update(held) == []  # two vectors are not enough evidence
    held.append(window([0], alice[None]))
    assert namer.update(held) == [(0, "Alice")]
    assert namer.name_of(0) == "Alice" and namer.name_of(1) is None
    assert namer.update(held) == []  # named once, for good


def test_names_are_one_to_one_and_only_above_the_threshold():
    alice, bob, stranger = directions(3, seed=4)
    namer = SpeakerNamer({"Alice": alice[None], "Bob": bob[None]}, threshold=0.8, min_vectors=1)
    # labels 0 and 1 both sound like Alice, label 2 like nobody enrolled
    held = [window([0, 1, 2], [alice, 0.9 * alice + 0.1 * stranger, stranger])]
    assert namer.update(held) == [(0, "Alice")]
    assert namer.update(held) == []  # Alice is taken: label 1 stays unnamed, as does label 2
    assert namer.name_of(1) is None and namer.name_of(2) is None


def test_retired_windows_count_towards_a_speaker():
    alice = directions(1, seed=5)[0]
    namer = SpeakerNamer({"Alice": alice[None]}, threshold=0.8, min_vectors=3)
    for _ in range(3):
        namer.retire(*window([0, -1], [alice, np.zeros(DIM)]))
    assert namer.update([]) == [(0, "Alice")]


def test_window_voiceprint_is_the_main_voice_or_none():
    activity = np.zeros((100, 3), dtype=np.float32)
    activity[:20, 0] = 1  # 20 frames of speaker 0, 60 of speaker 1
    activity[20:80, 1] = 1
    vectors = directions(3, seed=6).astype(np.float32)
    local = LocalSpeakers(activity, vectors, np.array([True, True, False]), frame_step=0.05)
    assert window_voiceprint(local, min_speech=1.0) == pytest.approx(vectors[1])
    assert window_voiceprint(local, min_speech=4.0) is None  # speaker 1 talks only 3 s


def test_first_speech_keeps_the_first_seconds_of_the_spans():
    assert first_speech([(0.0, 3.0), (5.0, 9.0), (10.0, 12.0)], 5.0) == [(0.0, 3.0), (5.0, 7.0)]


def test_the_stitcher_names_a_known_voice_from_then_on_and_says_which_label_it_was():
    truth = conversation(seed=7, duration=40.0)
    voices = directions(3, seed=7)  # two in the conversation, the third enrolled but absent
    rng = np.random.default_rng(7)
    namer = SpeakerNamer(
        {"Alice": voices[0][None], "Carol": voices[2][None]}, min_vectors=4, threshold=0.8
    )
    stitcher = Stitcher(OnlineClustering(buffer_size=100), FRAME, latency=2.0, namer=namer)
    turns = []
    for index, start, valid_end in window_spans(truth.duration):
        local, _ = local_speakers(truth, start, valid_end, voices[:2], rng)
        turns += stitcher.push(index, start, valid_end, local)
    turns += stitcher.flush()
    (naming,) = stitcher.namings
    assert (naming.label, naming.name) == ("SPEAKER_00", "Alice")  # the conversation's first voice
    assert {t.speaker for t in turns} == {"Alice", "SPEAKER_01"}  # Carol, absent, names nobody
    alice_turns = [t for t in turns if t.speaker == "Alice"]
    assert all(truth.speaking(0, np.array([(t.start + t.end) / 2]))[0] for t in alice_turns)
    assert sum(t.duration for t in alice_turns) > 10.0


def test_a_namer_wants_the_same_seconds_of_windows_whatever_their_step():
    people = {"Alice": np.ones((1, DIM))}
    assert SpeakerNamer.for_step(people, 0.5).min_vectors == 4  # live windows
    assert SpeakerNamer.for_step(people, 1.0).min_vectors == 2
    assert SpeakerNamer.for_step(people, 10 / 3).min_vectors == 1  # the default's file windows
