"""Turns in the forms other tools take: RTTM text, and pyannote.core annotations (for
pyannote.metrics and the rest of pyannote)."""

from __future__ import annotations

from collections.abc import Iterable

from pyannote.core import Annotation, Segment

from streamdiar.core.types import Turn
from streamdiar.stream.sinks import rttm_line


def to_rttm(turns: Iterable[Turn], uri: str) -> str:
    """The turns of file `uri` as RTTM, one SPEAKER line each, as `streamdiar diarize --rttm`
    writes them (times to the millisecond; whitespace in uri and speaker becomes `_`)."""
    return "".join(rttm_line(uri, turn) for turn in turns)


def to_annotation(turns: Iterable[Turn], uri: str | None = None) -> Annotation:
    """The turns as a pyannote.core Annotation, one track per turn, so that overlapping turns
    of two speakers both stay."""
    annotation = Annotation(uri=uri)
    for track, turn in enumerate(turns):
        annotation[Segment(turn.start, turn.end), track] = turn.speaker
    return annotation
