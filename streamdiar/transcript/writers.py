"""Speaker-attributed transcripts written one segment at a time, as segments are labelled.

SRT cues start with `[SPEAKER] `, WebVTT cues with a `<v SPEAKER>` voice tag; JSON is one
document (segments with their words) written when the writer closes; plain text and Markdown
start a new paragraph where the speaker changes. Text is written on one line per cue.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from streamdiar.transcript.types import LabelledSegment

FORMATS = ("srt", "vtt", "json", "txt", "md")


def _clock(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class TranscriptWriter:
    """Writes labelled segments to `stream` in one of FORMATS, flushing each one."""

    def __init__(self, stream: TextIO, kind: str) -> None:
        if kind not in FORMATS:
            raise ValueError(f"unknown transcript format {kind!r}")
        self._stream = stream
        self._kind = kind
        self._count = 0
        self._speaker: str | None = None
        self._json: list[dict[str, Any]] = []
        if kind == "vtt":
            self._put("WEBVTT\n")

    def write(self, segment: LabelledSegment) -> None:
        self._count += 1
        text = _one_line(segment.text)
        if self._kind == "srt":
            timing = f"{_clock(segment.start, ',')} --> {_clock(segment.end, ',')}"
            self._put(f"{self._count}\n{timing}\n[{segment.speaker}] {text}\n\n")
        elif self._kind == "vtt":
            timing = f"{_clock(segment.start, '.')} --> {_clock(segment.end, '.')}"
            self._put(f"\n{timing}\n<v {_vtt_escape(segment.speaker)}>{_vtt_escape(text)}\n")
        elif self._kind == "json":
            self._json.append(_as_json(segment))
        else:
            self._paragraph(segment, text)
        self._speaker = segment.speaker

    def _paragraph(self, segment: LabelledSegment, text: str) -> None:
        if segment.speaker == self._speaker:
            self._put(f" {text}")
            return
        gap = "\n\n" if self._speaker is not None else ""
        stamp = _clock(segment.start, ".")[:-4]
        if self._kind == "md":
            self._put(f"{gap}**{segment.speaker}** ({stamp}): {text}")
        else:
            self._put(f"{gap}[{stamp}] {segment.speaker}: {text}")

    def close(self) -> None:
        """Ends the document (JSON is written here, whole)."""
        if self._kind == "json":
            self._put(json.dumps({"segments": self._json}, ensure_ascii=False, indent=1) + "\n")
        elif self._kind in ("txt", "md") and self._speaker is not None:
            self._put("\n")

    def _put(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


def _as_json(segment: LabelledSegment) -> dict[str, Any]:
    item: dict[str, Any] = {
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "speaker": segment.speaker,
        "text": segment.text,
    }
    if segment.others:
        item["overlapping_speakers"] = list(segment.others)
    if segment.words:
        item["words"] = [
            {
                "word": w.word.text,
                "start": round(w.word.start, 3),
                "end": round(w.word.end, 3),
                "speaker": w.speaker,
                **({"overlapping_speakers": list(w.others)} if w.others else {}),
            }
            for w in segment.words
        ]
    return item


def format_of(path: Path) -> str:
    """The transcript format a file name asks for, by its suffix."""
    kind = path.suffix.lower().lstrip(".")
    if kind == "markdown":
        return "md"
    if kind not in FORMATS:
        raise ValueError(
            f"cannot tell the format of {path}: name it .{', .'.join(FORMATS)} or use --format"
        )
    return kind
