import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from random import Random

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamdiar.core.types import SAMPLE_RATE, Turn
from streamdiar.transcript.align import Claim, align, pick_speaker
from streamdiar.transcript.live import LiveAligner, Transcriber, transcribe_into
from streamdiar.transcript.types import UNKNOWN_SPEAKER, Segment, Word


def segment(*words: tuple[float, float, str]) -> Segment:
    return Segment(words[0][0], words[-1][1], " ".join(w[2] for w in words), tuple(Word(*w) for w in words))


def test_a_word_takes_the_speaker_who_overlaps_it_most():
    turns = [Turn(0.0, 1.2, "A"), Turn(1.2, 3.0, "B")]
    (labelled,) = align(turns, [Segment(0.9, 2.0, "hi")])
    assert labelled.speaker == "B" and labelled.others == ()


def test_a_word_no_turn_overlaps_takes_the_nearest_within_the_tolerance():
    turns = [Turn(0.0, 1.0, "A"), Turn(5.0, 6.0, "B")]
    near_a, near_b, lost = align(
        turns, [Segment(1.5, 1.8, "x"), Segment(4.2, 4.5, "y"), Segment(2.5, 3.0, "z")]
    )
    assert (near_a.speaker, near_b.speaker, lost.speaker) == ("A", "B", UNKNOWN_SPEAKER)
    (wider,) = align(turns, [Segment(3.2, 3.5, "z")], tolerance=2.0)
    assert wider.speaker == "B"


def test_a_segment_is_split_where_its_words_change_speaker():
    turns = [Turn(0.0, 2.0, "A"), Turn(2.0, 4.0, "B")]
    words = segment((0.1, 0.5, "one"), (0.6, 1.9, "two"), (2.1, 2.5, "three"), (2.6, 3.5, "four"))
    first, second = align(turns, [words])
    assert (first.speaker, first.text, first.start, first.end) == ("A", "one two", 0.1, 1.9)
    assert (second.speaker, second.text, second.start, second.end) == ("B", "three four", 2.1, 3.5)
    assert [w.speaker for w in first.words + second.words] == ["A", "A", "B", "B"]


def test_overlapped_speech_keeps_the_dominant_speaker_and_records_the_other():
    turns = [Turn(0.0, 4.0, "A"), Turn(1.0, 1.5, "B"), Turn(3.0, 5.0, "C")]
    (labelled,) = align(turns, [segment((0.5, 2.0, "over"), (2.1, 2.8, "alone"))])
    assert labelled.speaker == "A" and labelled.others == ("B",)
    assert [w.others for w in labelled.words] == [("B",), ()]
    (touching,) = align([Turn(0.0, 1.0, "A"), Turn(1.0, 2.0, "B")], [Segment(0.2, 1.1, "x")])
    assert touching.others == ()  # a speaker change is not overlapped speech


def test_the_tie_rule_most_overlap_then_nearest_then_first_started_then_label():
    assert pick_speaker([]) is None
    assert pick_speaker([Claim("A", 0.3, 0.0, 0.0), Claim("B", 0.5, 0.0, 1.0)]).speaker == "B"
    assert pick_speaker([Claim("A", 0.0, 0.4, 0.0), Claim("B", 0.0, 0.2, 1.0)]).speaker == "B"
    assert pick_speaker([Claim("A", 0.2, 0.0, 0.5), Claim("B", 0.2, 0.0, 0.1)]).speaker == "B"
    assert pick_speaker([Claim("B", 0.2, 0.0, 0.1), Claim("A", 0.2, 0.0, 0.1)]).speaker == "A"
    # 0.4 - 0.3 == 0.10000000000000003: float rounding breaks no tie
    assert pick_speaker([Claim("A", 0.4 - 0.3, 0.0, 0.3), Claim("B", 0.1, 0.0, 0.1)]).speaker == "B"


def test_ties_in_words_go_to_the_speaker_already_talking_then_to_the_first_label():
    overlap_tie = [Turn(0.1, 0.3, "B"), Turn(0.3, 0.5, "A")]
    (word,) = align(overlap_tie, [Segment(0.2, 0.4, "x")])
    assert word.speaker == "B"
    gap_tie = [Turn(0.0, 0.1, "B"), Turn(0.6, 0.7, "A")]
    (word,) = align(gap_tie, [Segment(0.3, 0.4, "x")])
    assert word.speaker == "B"
    interrupted = [Turn(0.0, 3.0, "B"), Turn(1.0, 2.0, "A")]
    (word,) = align(interrupted, [Segment(1.2, 1.8, "x")])
    assert (word.speaker, word.others) == ("B", ("A",))
    same = [Turn(0.0, 0.1, "B"), Turn(0.0, 0.1, "A")]  # words of no length: the turns
    # holding their instant, not one ending there
    instant = [Segment(0.0, 0.0, "x"), Segment(0.1, 0.1, "y")]
    assert [w.speaker for w in align(same + [Turn(0.1, 0.2, "C")], instant)] == ["A", "C"]


turn_lists = st.lists(
    st.tuples(st.integers(0, 400), st.integers(1, 60), st.sampled_from("ABC")), max_size=12
).map(lambda ts: [Turn(s / 10, (s + d) / 10, f"SPEAKER_{k}") for s, d, k in ts])
segment_lists = st.lists(
    st.lists(st.tuples(st.integers(0, 450), st.integers(0, 15)), min_size=1, max_size=4).map(
        lambda ws: segment(*((s / 10, (s + d) / 10, f"w{s}") for s, d in sorted(ws)))
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(turn_lists, segment_lists, st.randoms(use_true_random=False))
@example(  # a word of no length where a turn not yet pushed starts at the commit point
    turns=[Turn(0.0, 0.1, "SPEAKER_B"), Turn(0.0, 0.1, "SPEAKER_A")],
    segments=[segment((0.0, 0.0, "w0"))],
    random=Random(0),  # pushes the segment between the two turns
)
def test_live_labels_like_the_whole_file_in_any_order(turns, segments, random):
    """Turns in commit order (as the stitcher emits them), segments pushed at random moments:
    each segment comes out once, labelled as with all turns known."""
    turns = sorted(turns, key=lambda t: t.end)
    aligner = LiveAligner()
    events = [("turn", t) for t in turns] + [("segment", s) for s in segments]
    segment_events = [e for e in events if e[0] == "segment"]
    random.shuffle(segment_events)
    merged = [e for e in events if e[0] == "turn"]
    for event in segment_events:
        merged.insert(random.randint(0, len(merged)), event)
    out = []
    pushed = 0
    for kind, item in merged:
        if kind == "turn":
            out += aligner.push_turn(item)
            pushed += 1
            # a stitcher's commit point passes a turn's end, but not the start of one unseen
            out += aligner.commit(min([t.start for t in turns[pushed:]] + [item.end]))
        else:
            out += aligner.push_segment(item)
    out += aligner.finish()
    assert aligner.pending == 0
    key = lambda s: (s.start, s.end, s.text, s.speaker)  # noqa: E731
    assert sorted(map(key, out)) == sorted(map(key, align(turns, segments)))


def test_a_segment_waits_until_the_diarization_is_final_over_it():
    aligner = LiveAligner(tolerance=1.0)
    assert aligner.push_segment(Segment(1.0, 2.0, "hi")) == []
    assert aligner.commit(1.9, [Turn(0.5, 1.9, "A")]) == []
    (ready,) = aligner.commit(2.1, [Turn(0.5, 2.1, "A")])  # an open turn is enough
    assert ready.speaker == "A"
    assert aligner.push_turn(Turn(0.5, 2.4, "A")) == []  # the open turn, closed
    assert aligner.push_segment(Segment(2.9, 3.0, "gap")) == []
    assert aligner.commit(3.2) == []  # no turn overlaps it: a nearer one may still come
    assert aligner.push_turn(Turn(3.6, 4.0, "B")) == []
    assert aligner.commit(4.0) == []  # a turn may still start at 4.0, as near as 1 s
    (gap,) = aligner.commit(4.1)
    assert gap.speaker == "A"  # 0.5 s from A's turn, 0.6 s from B's


def test_a_closed_turn_is_not_counted_twice_with_its_open_part():
    aligner = LiveAligner()
    aligner.commit(2.0, [Turn(0.0, 2.0, "B"), Turn(1.0, 2.0, "A")])
    aligner.push_turn(Turn(1.0, 2.0, "A"))  # closed before the next commit
    (live,) = aligner.push_segment(Segment(1.2, 1.8, "x"))
    (whole,) = align([Turn(0.0, 3.0, "B"), Turn(1.0, 2.0, "A")], [Segment(1.2, 1.8, "x")])
    assert live.speaker == whole.speaker == "B"


class FakeTranscriber:
    """Transcribes by schedule: a segment comes out once the audio has reached its end."""

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments

    async def transcribe(self, blocks: AsyncIterable[np.ndarray]) -> AsyncIterator[Segment]:
        heard = 0.0
        waiting = list(self.segments)
        async for block in blocks:
            heard += len(block) / SAMPLE_RATE
            while waiting and waiting[0].end <= heard:
                yield waiting.pop(0)


def test_a_transcriber_feeds_the_live_aligner():
    async def blocks() -> AsyncIterator[np.ndarray]:
        for _ in range(8):
            yield np.zeros(SAMPLE_RATE // 2, dtype=np.float32)  # (8000,): 0.5 s

    async def run() -> list:
        aligner = LiveAligner()
        aligner.push_turn(Turn(0.0, 2.0, "A"))
        aligner.commit(4.0, [Turn(2.0, 4.0, "B")])
        transcriber: Transcriber = FakeTranscriber([Segment(0.2, 1.0, "one"), Segment(2.5, 3.5, "two")])
        return [s async for s in transcribe_into(aligner, transcriber, blocks())]

    assert [(s.text, s.speaker) for s in asyncio.run(run())] == [("one", "A"), ("two", "B")]
