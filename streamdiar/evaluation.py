"""Diarization error rate (DER) of hypotheses against references, with pyannote.metrics."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from streamdiar.errors import StreamdiarError
from streamdiar.text_files import TextFileError, read_text_file


class EvaluationError(StreamdiarError):
    """An evaluation input is missing, unreadable or malformed; the message names the file."""


# The RTTM and UEM readers below stand in for pyannote.database.util.load_rttm / load_uem
# (present in pyannote.database 6.1.1). Those read through pandas, which takes labels such as
# "NA", "null" or "None" for missing values (merging those speakers, dropping such a uri),
# silently drops or misreads lines with too few or too many fields, and rejects `;` comments.


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each line that is neither blank nor a `;` comment."""
    try:
        text = read_text_file(path, "a file")
    except TextFileError as error:
        raise EvaluationError(str(error)) from None
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields and not fields[0].startswith(";"):
            yield number, fields


def _seconds(path: Path, number: int, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise EvaluationError(f"{path}: line {number}: {what} {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise EvaluationError(
            f"{path}: line {number}: {what} {text!r} must be finite and not negative"
        )
    return value


def load_rttm(path: str | Path) -> dict[str, Annotation]:
    """Speaker turns per uri from an RTTM file.

    Only SPEAKER lines count; other types (SPKR-INFO...), blank lines and `;` comments are
    skipped. A SPEAKER line has 10 fields, or 9 when the trailing <NA> is left out.
    """
    path = Path(path)
    annotations: dict[str, Annotation] = {}
    for number, fields in _records(path):
        if fields[0] != "SPEAKER":
            continue
        if len(fields) not in (9, 10):
            raise EvaluationError(
                f"{path}: line {number}: expected 10 RTTM fields, found {len(fields)}"
            )
        uri, speaker = fields[1], fields[7]
        start = _seconds(path, number, fields[3], "start")
        duration = _seconds(path, number, fields[4], "duration")
        annotation = annotations.setdefault(uri, Annotation(uri=uri))
        annotation[Segment(start, start + duration), number] = speaker
    return annotations


def load_uem(path: str | Path) -> dict[str, Timeline]:
    """Scored regions per uri from a UEM file: lines of `uri channel start end`."""
    path = Path(path)
    timelines: dict[str, Timeline] = {}
    for number, fields in _records(path):
        if len(fields) != 4:
            raise EvaluationError(
                f"{path}: line {number}: expected 4 UEM fields, found {len(fields)}"
            )
        uri = fields[0]
        start = _seconds(path, number, fields[2], "start")
        end = _seconds(path, number, fields[3], "end")
        if end < start:
            raise EvaluationError(f"{path}: line {number}: end {end} is before start {start}")
        timelines.setdefault(uri, Timeline(uri=uri)).add(Segment(start, end))
    return timelines


_DER = "diarization error rate"


@dataclass(frozen=True)
class DerScores:
    """Diarization error of one file or a set of files.

    The rates are fractions of `total`, the seconds of reference speech (overlapped speech
    counted once per speaker); the `_s` fields are the same components in seconds.
    """

    der: float
    missed: float
    false_alarm: float
    confusion: float
    total: float
    missed_s: float
    false_alarm_s: float
    confusion_s: float


@dataclass(frozen=True)
class DerReport(DerScores):
    """Scores over all scored files together, and `per_uri`."""

    per_uri: dict[str, DerScores]


def _score_fields(components: dict[str, Any]) -> dict[str, float]:
    """DerScores fields from pyannote.metrics' detailed output."""
    total = components["total"]

    def rate(seconds: float) -> float:
        # pyannote.metrics' convention when there is no reference speech.
        if total == 0:
            return 0.0 if seconds == 0 else 1.0
        return seconds / total

    missed = components["missed detection"]
    false_alarm = components["false alarm"]
    confusion = components["confusion"]
    return {
        "der": components[_DER],
        "missed": rate(missed),
        "false_alarm": rate(false_alarm),
        "confusion": rate(confusion),
        "total": total,
        "missed_s": missed,
        "false_alarm_s": false_alarm,
        "confusion_s": confusion,
    }


def diarization_error_rate(
    reference: dict[str, Annotation],
    hypothesis: dict[str, Annotation],
    uem: dict[str, Timeline] | None = None,
) -> DerReport:
    """DER with no collar and overlapped speech scored, accumulated over files.

    The files scored are the reference uris or, with a `uem`, those of them that it lists;
    hypothesis uris absent from the reference are ignored, and a reference uri absent from
    the hypothesis is scored against an empty one (all its speech missed). The overall rates
    weigh each file by its reference speech, as pyannote.metrics accumulates components.

    pyannote.metrics scores one file against one uem timeline, cropping reference and
    hypothesis to it. Without a uem it takes the span from the earliest to the latest turn
    of either, which holds every turn, so all speech is scored; it warns that it did so, a
    warning silenced here as this is the intended behaviour.
    """
    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    uris = sorted(uri for uri in reference if uem is None or uri in uem)
    per_uri: dict[str, DerScores] = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'uem' was approximated")
        for uri in uris:
            components = metric(
                reference[uri],
                hypothesis.get(uri, Annotation(uri=uri)),
                uem=None if uem is None else uem[uri],
                detailed=True,
            )
            per_uri[uri] = DerScores(**_score_fields(components))
    overall = {**metric[:], _DER: abs(metric)}
    return DerReport(**_score_fields(overall), per_uri=per_uri)


def format_report(report: DerReport) -> str:
    """A table of DER and its components in percent, per file then overall."""
    rows = [("uri", ("DER", "missed", "false alarm", "confusion"))]
    for name, scores in [*report.per_uri.items(), ("overall", report)]:
        rates = (scores.der, scores.missed, scores.false_alarm, scores.confusion)
        rows.append((name, tuple(f"{100 * rate:.2f} %" for rate in rates)))
    name_width = max(len(name) for name, _ in rows)
    widths = [max(len(cells[i]) for _, cells in rows) for i in range(4)]
    return "\n".join(
        "  ".join((name.ljust(name_width), *(c.rjust(w) for c, w in zip(cells, widths))))
        for name, cells in rows
    )
