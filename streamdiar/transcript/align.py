"""Who said each word: the speaker whose turns overlap it most.

A word no turn overlaps gets the speaker of the nearest turn within `tolerance` seconds, else
UNKNOWN_SPEAKER. A segment whose words change speaker is split at each change. Where two
speakers talk at once, the dominant one labels the word and the other is recorded in `others`.
A segment without word times is labelled as one word.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streamdiar.core.types import Turn
from streamdiar.transcript.types import (
    UNKNOWN_SPEAKER,
    LabelledSegment,
    LabelledWord,
    Segment,
    Word,
)

DEFAULT_TOLERANCE = 1.0  # s


class TurnIndex:
    """Turns sorted by start, for the turns near a span; turns may be added at any time."""

    def __init__(self, turns: Iterable[Turn] = ()) -> None:
        self._turns: list[Turn] = []
        self._starts: list[float] = []
        self._longest = 0.0  # s, bounds how far back a turn overlapping a span can start
        for turn in turns:
            self.add(turn)

    def add(self, turn: Turn) -> None:
        at = bisect.bisect_right(self._starts, turn.start)
        self._starts.insert(at, turn.start)
        self._turns.insert(at, turn)
        self._longest = max(self._longest, turn.duration)

    def near(self, start: float, end: float, margin: float = 0.0) -> list[Turn]:
        """Turns that overlap [start - margin, end + margin] or touch it."""
        first = bisect.bisect_left(self._starts, start - margin - self._longest)
        last = bisect.bisect_right(self._starts, end + margin)
        return [t for t in self._turns[first:last] if t.end >= start - margin]


@dataclass(frozen=True)
class WordLabel:
    speaker: str
    others: tuple[str, ...]
    overlapped: bool  # False: labelled by the nearest turn (or unknown)


def _overlap(a_start: float, a_end: float, b_start: float, b_end: float) -> float:
    return max(0.0, min(a_end, b_end) - max(a_start, b_start))


def label_span(turns: list[Turn], start: float, end: float, tolerance: float) -> WordLabel:
    """The speaker of [start, end] among `turns` (those near it, see TurnIndex.near)."""
    spoken: dict[str, float] = {}
    for turn in turns:
        seconds = _overlap(start, end, turn.start, turn.end)
        spoken[turn.speaker] = spoken.get(turn.speaker, 0.0) + seconds
    spoken = {speaker: seconds for speaker, seconds in spoken.items() if seconds > 0}
    if not spoken and end == start:  # a word without duration: the turn around its instant
        spoken = {t.speaker: 1.0 for t in turns if t.start <= start < t.end}
    if spoken:
        dominant = max(sorted(spoken), key=spoken.__getitem__)
        mine = [t for t in turns if t.speaker == dominant]
        others = sorted(
            {
                t.speaker
                for t in turns
                if t.speaker != dominant
                and any(
                    _overlap(max(start, m.start), min(end, m.end), t.start, t.end) > 0 for m in mine
                )
            }
        )
        return WordLabel(dominant, tuple(others), True)
    distances = [(max(t.start - end, start - t.end, 0.0), t.speaker) for t in turns]
    nearest = min(((d, s) for d, s in distances if d <= tolerance), default=None)
    return WordLabel(nearest[1] if nearest else UNKNOWN_SPEAKER, (), False)


def label_segment(
    index: TurnIndex,
    segment: Segment,
    tolerance: float = DEFAULT_TOLERANCE,
    extra: Sequence[Turn] = (),
) -> tuple[list[LabelledSegment], bool]:
    """The segment cut where its speaker changes, and whether every word overlapped a turn
    (if not, the nearest-turn rule decided, whose answer a turn yet to come may change).

    extra: a few more turns (those still open in a live stream) beside the index.
    """
    words = segment.words or (Word(segment.start, segment.end, segment.text),)
    labelled = []
    all_overlapped = True
    for word in words:
        near = index.near(word.start, word.end, tolerance)
        near += [
            t for t in extra if t.end >= word.start - tolerance and t.start <= word.end + tolerance
        ]
        label = label_span(near, word.start, word.end, tolerance)
        all_overlapped &= label.overlapped
        labelled.append(LabelledWord(word, label.speaker, label.others))
    pieces: list[list[LabelledWord]] = []
    for word in labelled:
        if pieces and pieces[-1][-1].speaker == word.speaker:
            pieces[-1].append(word)
        else:
            pieces.append([word])
    kept = tuple(labelled) if segment.words else ()
    if len(pieces) == 1:
        others = tuple(sorted({s for w in labelled for s in w.others}))
        whole = LabelledSegment(
            segment.start, segment.end, segment.text, labelled[0].speaker, others, kept
        )
        return [whole], all_overlapped
    result = []
    for i, piece in enumerate(pieces):
        start = segment.start if i == 0 else piece[0].word.start
        end = segment.end if i == len(pieces) - 1 else piece[-1].word.end
        result.append(
            LabelledSegment(
                start,
                end,
                " ".join(w.word.text for w in piece),
                piece[0].speaker,
                tuple(sorted({s for w in piece for s in w.others})),
                tuple(piece),
            )
        )
    return result, all_overlapped


def align(
    turns: Iterable[Turn], segments: Iterable[Segment], tolerance: float = DEFAULT_TOLERANCE
) -> list[LabelledSegment]:
    """Every segment labelled with the speakers of `turns`, in the order of `segments`."""
    index = TurnIndex(turns)
    return [piece for segment in segments for piece in label_segment(index, segment, tolerance)[0]]
