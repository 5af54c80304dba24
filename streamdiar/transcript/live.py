"""Labelled segments as soon as both diarization and transcription cover them.

Turns and transcript segments are pushed in any order; the diarizer says how far its timeline
is final (`commit`). A segment comes out once the timeline is final to its end, or, when a
word of it has no overlapping turn and so takes the nearest one, to `tolerance` s past its
end (a turn starting by then may be nearer); `finish` releases the rest. Segments come out
in the order of their starts (a segment waits for the pending ones before it), each once,
never relabelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Protocol

import numpy as np

from streamdiar.core.types import Turn
from streamdiar.transcript.align import DEFAULT_TOLERANCE, TurnIndex, label_segment
from streamdiar.transcript.types import LabelledSegment, Segment


_EPSILON = 1e-6  # s: a turn starting exactly `tolerance` after a segment counts as near it


class Transcriber(Protocol):
    """What `streamdiar live --transcribe` will run beside the diarizer, on a tee of the
    same audio: segments (in stream seconds) as the transcriber finishes them."""

    def transcribe(self, blocks: AsyncIterable[np.ndarray]) -> AsyncIterator[Segment]:
        """blocks: (samples,) float32 mono 16 kHz, in stream order."""
        ...


class LiveAligner:
    def __init__(self, tolerance: float = DEFAULT_TOLERANCE) -> None:
        self.tolerance = tolerance
        self._closed = TurnIndex()
        self._open: Sequence[Turn] = ()
        self._pending: list[Segment] = []
        self._committed = 0.0  # s, diarization final up to here
        self._finished = False

    @property
    def pending(self) -> int:
        """Segments pushed and not yet labelled."""
        return len(self._pending)

    def push_turn(self, turn: Turn) -> list[LabelledSegment]:
        """A committed (closed) turn; returns the segments this makes ready."""
        self._closed.add(turn)
        return self._ready()

    def push_segment(self, segment: Segment) -> list[LabelledSegment]:
        self._pending.append(segment)
        return self._ready()

    def commit(self, until: float, open_turns: Sequence[Turn] = ()) -> list[LabelledSegment]:
        """The diarization is final up to `until` s. `open_turns`: the final part (up to
        `until`) of turns that have not ended yet, which closed turns do not show."""
        self._committed = max(self._committed, until)
        self._open = tuple(open_turns)
        return self._ready()

    def finish(self) -> list[LabelledSegment]:
        """The diarization is over: every pending segment is labelled with what is known."""
        self._finished = True
        return self._ready()

    def _ready(self) -> list[LabelledSegment]:
        ready: list[LabelledSegment] = []
        waiting: list[Segment] = []
        for segment in sorted(self._pending, key=lambda s: s.start):
            if not waiting and (self._finished or self._committed >= segment.end):
                pieces, overlapped = label_segment(
                    self._closed, segment, self.tolerance, self._open
                )
                nearest_final = self._committed > segment.end + self.tolerance + _EPSILON
                if overlapped or self._finished or nearest_final:
                    ready.extend(pieces)
                    continue
            waiting.append(segment)  # and the segments after it, so that all come out in order
        self._pending = waiting
        return ready


async def transcribe_into(
    aligner: LiveAligner, transcriber: Transcriber, blocks: AsyncIterable[np.ndarray]
) -> AsyncIterator[LabelledSegment]:
    """Runs `transcriber` over `blocks`, pushing its segments into `aligner`; yields what
    each push makes ready (turns and commits reach the aligner from the diarizer)."""
    async for segment in transcriber.transcribe(blocks):
        for labelled in aligner.push_segment(segment):
            yield labelled
