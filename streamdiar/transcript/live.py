"""Labelled segments as soon as both diarization and transcription cover them.

Turns and transcript segments are pushed in any order; the diarizer says how far its timeline
is final (`commit`). A segment comes out once the timeline is final past its end (a turn
starting right at its end would hold a word of no length there), or, when a word of it has no
overlapping turn and so takes the nearest one, more than `tolerance` s past its end (a turn
starting by then may be nearer); `finish` releases the rest. Segments come out in the order
of their starts (a segment waits for the pending ones before it), each once, never relabelled,
with the labels `align` gives with all turns known (both pick speakers with `pick_speaker`).
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

import numpy as np

from streamdiar.core.types import Turn
from streamdiar.stream.tee import Tee
from streamdiar.transcript.align import (
    DEFAULT_TOLERANCE,
    TIME_RESOLUTION,
    TurnIndex,
    label_segment,
)
from streamdiar.transcript.types import LabelledSegment, Segment

COMMIT_POLL_SECONDS = 0.1

# How far the diarization is final, and the final part of the turns still open (see commit)
Progress = Callable[[], tuple[float, Sequence[Turn]]]


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
        self._open = _without(self._open, turn)
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
            if not waiting and (self._finished or self._committed > segment.end):
                pieces, overlapped = label_segment(
                    self._closed, segment, self.tolerance, self._open
                )
                # a turn starting exactly `tolerance` after the segment is near it
                nearest_final = self._committed > segment.end + self.tolerance + TIME_RESOLUTION
                if overlapped or self._finished or nearest_final:
                    ready.extend(pieces)
                    continue
            waiting.append(segment)  # and the segments after it, so that all come out in order
        self._pending = waiting
        return ready


def _without(open_turns: Sequence[Turn], closed: Turn) -> Sequence[Turn]:
    """The open turns but the part of `closed` (a closed turn starts as its open part did), so
    that until the next commit it is not counted twice."""
    return tuple(t for t in open_turns if (t.start, t.speaker) != (closed.start, closed.speaker))


async def transcribe_into(
    aligner: LiveAligner, transcriber: Transcriber, blocks: AsyncIterable[np.ndarray]
) -> AsyncIterator[LabelledSegment]:
    """Runs `transcriber` over `blocks`, pushing its segments into `aligner`; yields what
    each push makes ready (turns and commits reach the aligner from the diarizer)."""
    async for segment in transcriber.transcribe(blocks):
        for labelled in aligner.push_segment(segment):
            yield labelled


class LiveTranscription:
    """A Transcriber run beside a live diarizer on a tee of its audio: each of its segments,
    labelled with the diarizer's turns, goes to `on_segment` as soon as both cover it.

    The transcriber gets its own queue of up to `max_behind_seconds` of audio, so that it
    never holds back capture or the diarizer; beyond that its oldest audio is dropped (see
    Tee) and counted in `dropped_seconds`.
    """

    def __init__(
        self,
        transcriber: Transcriber,
        on_segment: Callable[[LabelledSegment], None],
        tolerance: float = DEFAULT_TOLERANCE,
        max_behind_seconds: float = 30.0,
    ) -> None:
        self.aligner = LiveAligner(tolerance)
        self.released = 0  # labelled segments handed to on_segment
        self.failure: str | None = None  # why the transcriber stopped early, if it did
        self._transcriber = transcriber
        self._on_segment = on_segment
        self._max_behind = max_behind_seconds
        self._tee: Tee | None = None

    @property
    def dropped_seconds(self) -> float:
        """Audio the transcriber was too slow to take."""
        return 0.0 if self._tee is None else self._tee.dropped_seconds

    def describe(self) -> str:
        """Labelled segments so far, audio the transcriber missed, why it stopped if it did."""
        line = (
            f"{self.released} transcript segment{'' if self.released == 1 else 's'}, "
            f"{self.dropped_seconds:.1f} s not transcribed"
        )
        if self.failure is not None:
            line += f" (transcription stopped: {self.failure})"
        return line

    def push_turn(self, turn: Turn) -> None:
        """A turn the diarizer committed."""
        self._release(self.aligner.push_turn(turn))

    @asynccontextmanager
    async def beside(
        self, blocks: AsyncIterable[np.ndarray], progress: Progress
    ) -> AsyncIterator[AsyncIterator[np.ndarray]]:
        """Gives the blocks for the diarizer, and transcribes a tee of them until the context
        ends; `progress` is polled for the diarizer's commits. Ending without an error waits
        for the transcriber to finish the audio it got, then labels every pending segment:
        push the last turns (the diarizer's flush) before."""
        tee = self._tee = Tee(blocks, self._max_behind)
        tasks = [
            asyncio.create_task(self._transcribe(tee.side())),
            asyncio.create_task(self._follow(progress)),
        ]
        try:
            yield tee.main()
            tee.close()
            await tasks[0]
        finally:
            tee.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._release(self.aligner.commit(*progress()))
        self._release(self.aligner.finish())

    async def _transcribe(self, blocks: AsyncIterable[np.ndarray]) -> None:
        try:
            async for labelled in transcribe_into(self.aligner, self._transcriber, blocks):
                self._release([labelled])
        except Exception as error:  # whatever a transcriber raises: the diarization goes on
            said = str(error).strip()
            self.failure = said.splitlines()[0] if said else type(error).__name__
            warnings.warn(f"transcription stopped: {self.failure}", stacklevel=1)

    async def _follow(self, progress: Progress) -> None:
        while True:
            self._release(self.aligner.commit(*progress()))
            await asyncio.sleep(COMMIT_POLL_SECONDS)

    def _release(self, labelled: list[LabelledSegment]) -> None:
        for segment in labelled:
            self.released += 1
            self._on_segment(segment)
