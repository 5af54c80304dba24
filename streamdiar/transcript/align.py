"""Who said each word: the speaker whose turns overlap it most.

A word no turn overlaps gets the speaker of the nearest turn within `tolerance` seconds, else
UNKNOWN_SPEAKER. A turn holds [start, end): a word of no length is overlapped by the turns
holding its instant (one starting there, not one ending there). Ties are broken by one rule,
`pick_speaker`. A segment whose words change speaker is split at each change. Where two
speakers talk at once, the dominant one labels the word and the other is recorded in `others`.
A segment without word times is labelled as one word.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streamdiar.core.types import Turn
from streamdiar.transcript.readers import WhisperOutput, whisper_segments
from streamdiar.transcript.types import (
    UNKNOWN_SPEAKER,
    LabelledSegment,
    LabelledWord,
    Segment,
    Word,
)

DEFAULT_TOLERANCE = 1.0  # s
TIME_RESOLUTION = 1e-6  # s: times closer than this are the same time


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


@dataclass(frozen=True)
class Claim:
    """What one speaker's turns have on a word."""

    speaker: str
    overlap: float  # s of the word they cover; a word of no length: how many hold its instant
    gap: float  # s between the word and the nearest of them, 0 when one overlaps or touches it
    start: float  # s, the earliest start of those that count: the overlapping, else the nearest


def _ticks(seconds: float) -> int:
    return round(seconds / TIME_RESOLUTION)


def _rank(claim: Claim) -> tuple[int, int, int, str]:
    return (-_ticks(claim.overlap), _ticks(claim.gap), _ticks(claim.start), claim.speaker)


def pick_speaker(claims: Iterable[Claim]) -> Claim | None:
    """The winning claim, or None without any: the tie rule, the only place a speaker is picked.

    Most overlap, then (no turn overlapping) the nearest turn, then the turn that started first
    (the speaker already talking keeps the word), then the label that sorts first. Seconds are
    compared in whole TIME_RESOLUTION steps, so that float rounding (0.3 - 0.2 < 0.1) decides
    nothing, and the order of the claims does not matter: the whole file and a live stream,
    which see the same turns in other orders, agree.
    """
    return min(claims, key=_rank, default=None)


def _overlap(a_start: float, a_end: float, b_start: float, b_end: float) -> float:
    return max(0.0, min(a_end, b_end) - max(a_start, b_start))


def _held(turn: Turn, start: float, end: float) -> float:
    if end == start:
        return 1.0 if turn.start <= start < turn.end else 0.0
    return _overlap(start, end, turn.start, turn.end)


def _gap(turn: Turn, start: float, end: float) -> float:
    return max(turn.start - end, start - turn.end, 0.0)


def _claim(speaker: str, mine: list[Turn], start: float, end: float) -> Claim:
    held = [(_held(t, start, end), t) for t in mine]
    gap = min(_gap(t, start, end) for t in mine)
    counting = [t for h, t in held if h > 0] or [t for t in mine if _gap(t, start, end) == gap]
    return Claim(speaker, sum(h for h, _ in held), gap, min(t.start for t in counting))


def _claims(turns: list[Turn], start: float, end: float, tolerance: float) -> list[Claim]:
    """A claim per speaker whose turns overlap [start, end] or come within `tolerance` of it."""
    by_speaker: dict[str, list[Turn]] = {}
    for turn in turns:
        by_speaker.setdefault(turn.speaker, []).append(turn)
    claims = [_claim(speaker, mine, start, end) for speaker, mine in by_speaker.items()]
    return [c for c in claims if _ticks(c.gap) <= _ticks(tolerance)]


def _talking_over(turns: list[Turn], speaker: str, start: float, end: float) -> tuple[str, ...]:
    """The other speakers whose turns overlap `speaker`'s within [start, end]."""
    mine = [t for t in turns if t.speaker == speaker]
    over = {
        t.speaker
        for t in turns
        if t.speaker != speaker
        and any(_overlap(max(start, m.start), min(end, m.end), t.start, t.end) > 0 for m in mine)
    }
    return tuple(sorted(over))


def label_span(turns: list[Turn], start: float, end: float, tolerance: float) -> WordLabel:
    """The speaker of [start, end] among `turns` (those near it, see TurnIndex.near)."""
    best = pick_speaker(_claims(turns, start, end, tolerance))
    if best is None:
        return WordLabel(UNKNOWN_SPEAKER, (), False)
    if _ticks(best.overlap) == 0:
        return WordLabel(best.speaker, (), False)
    return WordLabel(best.speaker, _talking_over(turns, best.speaker, start, end), True)


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
        reach = tolerance + TIME_RESOLUTION  # the claims decide, in whole steps
        near = index.near(word.start, word.end, reach)
        near += [t for t in extra if t.end >= word.start - reach and t.start <= word.end + reach]
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


def label_transcript(
    turns: Iterable[Turn], whisper: WhisperOutput, tolerance: float = DEFAULT_TOLERANCE
) -> list[LabelledSegment]:
    """Who said what: Whisper output labelled with the speakers of `turns`, by the rules above
    (a segment whose words change speaker is split there).

    whisper: a file of Whisper output in any format `streamdiar transcript` reads, its
    decoded JSON, or its segments (what faster-whisper's `WhisperModel.transcribe` yields,
    with `word_timestamps=True` for labels per word). Raises TranscriptError for output that
    cannot be read.
    """
    return align(turns, whisper_segments(whisper), tolerance)
