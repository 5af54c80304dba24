"""Transcription output read into segments, whatever program wrote it.

The format is detected from the content: whisper.cpp JSON (`-oj`, and `-ojf` with tokens;
times in `offsets` milliseconds), openai-whisper / faster-whisper / WhisperX JSON
(`segments[]` with `start`, `end`, `text` and optional `words[]`), JSON lines of such
segments, SRT and WebVTT. A program's Whisper output (decoded JSON, faster-whisper's segment
objects) is read without a file. Segments come back sorted by start; overlapping segments are
kept as they are (each one is labelled on its own).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from streamdiar.errors import StreamdiarError
from streamdiar.text_files import TextFileError, read_text_file
from streamdiar.transcript.types import Segment, Word
from streamdiar.transcript.whisper import faster_whisper_segment

EXPECTED = (
    "expected whisper.cpp JSON (transcription[]), Whisper JSON (segments[]), "
    "JSON lines of segments, SRT or WebVTT"
)
END_SLACK = 0.5  # s a segment may run past the audio (rounded timestamps) before it is an error


class TranscriptError(StreamdiarError, ValueError):
    """A transcript cannot be read or does not fit the audio; str(error) is one line."""


# A file of Whisper output, its decoded JSON, or its segments (faster-whisper's, dicts, Segments)
WhisperOutput = str | os.PathLike[str] | dict[str, Any] | Iterable[Any]
PROGRAM_OUTPUT = "whisper output"  # names Whisper output held by a program in errors


def read_transcript(path: str | Path) -> list[Segment]:
    path = Path(path)
    try:
        text = read_text_file(path, "a transcript", encoding="utf-8-sig", hint=f": {EXPECTED}")
    except TextFileError as error:
        raise TranscriptError(str(error)) from None
    return parse_transcript(text, str(path))


def whisper_segments(whisper: WhisperOutput) -> list[Segment]:
    """Segments of Whisper output in any form a program holds it: the path of a file
    `read_transcript` reads; decoded JSON (openai-whisper's `transcribe()` result, WhisperX's,
    whisper.cpp's); or segments: what faster-whisper's `WhisperModel.transcribe` yields,
    dicts as in Whisper JSON, or Segments. Raises TranscriptError for anything else."""
    if isinstance(whisper, (str, os.PathLike)):
        return read_transcript(Path(whisper))
    if isinstance(whisper, dict):
        segments = _parse_json_document(whisper, PROGRAM_OUTPUT)
    else:
        segments = [_held_segment(item, f"{PROGRAM_OUTPUT}[{i}]") for i, item in enumerate(whisper)]
    return sorted(segments, key=lambda s: s.start)


def _held_segment(item: Any, where: str) -> Segment:
    """One segment of Whisper output that a program holds."""
    if isinstance(item, Segment):
        return item
    if isinstance(item, dict):
        return _segment(item, where)
    if all(hasattr(item, name) for name in ("start", "end", "text", "words")):
        return faster_whisper_segment(item)
    raise TranscriptError(
        f"{where}: expected a segment (a dict of Whisper JSON, a faster-whisper Segment or a "
        f"streamdiar Segment), found {type(item).__name__}"
    )


def parse_transcript(text: str, source: str) -> list[Segment]:
    """Segments of a transcript held in `text`; `source` names it in errors."""
    stripped = text.strip()
    if not stripped:
        raise TranscriptError(f"{source}: empty file: {EXPECTED}")
    if stripped[0] in "{[":
        segments = _parse_json_text(stripped, source)
    elif stripped.startswith("WEBVTT"):
        segments = _parse_vtt(stripped, source)
    elif _SRT_TIMING.search(stripped):
        segments = _parse_srt(stripped, source)
    else:
        raise TranscriptError(f"{source}: unknown format: {EXPECTED}")
    return sorted(segments, key=lambda s: s.start)


def parse_json_line(line: str, source: str, number: int) -> Segment:
    """One segment from a line of JSON lines (as a live transcriber appends them)."""
    where = f"{source}: line {number}"
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise TranscriptError(f"{where}: not JSON ({error.msg}): {EXPECTED}") from None
    return _segment(item, where)


def check_times(segments: list[Segment], duration: float | None, source: str) -> list[Segment]:
    """Segments that fit audio of `duration` s (None: unknown, nothing to check).

    A segment that starts after the audio ends is an error (most likely the transcript of
    another file); one that only ends up to END_SLACK s past it is clipped to the end.
    """
    if duration is None:
        return segments
    fitted = []
    for segment in segments:
        if segment.start >= duration or segment.end > duration + END_SLACK:
            raise TranscriptError(
                f"{source}: segment {segment.start:.2f}-{segment.end:.2f} s lies beyond the end "
                f"of the audio ({duration:.2f} s): is it the transcript of this audio?"
            )
        fitted.append(clip_segment(segment, duration))
    return fitted


def clip_segment(segment: Segment, duration: float) -> Segment:
    if segment.end <= duration:
        return segment
    words = tuple(
        Word(min(w.start, duration), min(w.end, duration), w.text) for w in segment.words
    )
    return Segment(segment.start, duration, segment.text, words, segment.speaker)


def _parse_json_text(text: str, source: str) -> list[Segment]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if len(lines) < 2:
            raise TranscriptError(f"{source}: broken JSON: {EXPECTED}") from None
        return [parse_json_line(line, source, n) for n, line in lines]
    return _parse_json_document(document, source)


def _parse_json_document(document: Any, source: str) -> list[Segment]:
    """Segments of decoded transcript JSON: an object of one of the known shapes, or a list
    of segments."""
    if isinstance(document, dict) and "transcription" in document:
        return _items(document["transcription"], f"{source}: transcription")
    if isinstance(document, dict) and "segments" in document:
        return _items(document["segments"], f"{source}: segments")
    if isinstance(document, list):
        return _items(document, source)
    if isinstance(document, dict) and ("start" in document or "offsets" in document):
        return [_segment(document, f"{source}: line 1")]  # JSON lines holding one segment
    if isinstance(document, dict):
        found = f"an object with keys {', '.join(list(document)[:5])}"
    else:
        found = type(document).__name__
    raise TranscriptError(f"{source}: {EXPECTED}, found {found}")


def _items(items: Any, where: str) -> list[Segment]:
    if not isinstance(items, list):
        raise TranscriptError(f"{where}: expected a list of segments, found {type(items).__name__}")
    return [_segment(item, f"{where}[{i}]") for i, item in enumerate(items)]


def _number(item: dict, key: str, where: str) -> float:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TranscriptError(f"{where}: {key!r} must be a number of seconds, found {value!r}")
    if value < 0:
        raise TranscriptError(f"{where}: {key!r} must not be negative, found {value!r}")
    return float(value)


def _span(item: dict, where: str) -> tuple[float, float]:
    """(start, end) in seconds from `start`/`end` seconds or whisper.cpp `offsets` in ms."""
    if "offsets" in item:
        offsets = item["offsets"]
        if not isinstance(offsets, dict):
            raise TranscriptError(f"{where}: 'offsets' must be an object with 'from' and 'to' (ms)")
        start = _number(offsets, "from", f"{where}.offsets") / 1000
        end = _number(offsets, "to", f"{where}.offsets") / 1000
    else:
        start, end = _number(item, "start", where), _number(item, "end", where)
    if end < start:
        raise TranscriptError(f"{where}: ends ({end:.3f} s) before it starts ({start:.3f} s)")
    return start, end


def _segment(item: Any, where: str) -> Segment:
    if not isinstance(item, dict):
        raise TranscriptError(f"{where}: expected a segment object, found {type(item).__name__}")
    start, end = _span(item, where)
    text = item.get("text")
    if not isinstance(text, str):
        raise TranscriptError(f"{where}: 'text' must be a string, found {text!r}")
    if "tokens" in item and "offsets" in item:
        words = _token_words(item["tokens"], where)
    else:
        words = _words(item.get("words", []), where)
    return Segment(start, end, text.strip(), words)


def _words(items: Any, where: str) -> tuple[Word, ...]:
    """Words of a Whisper segment. WhisperX leaves some words (numbers) without times: such a
    word joins the timed word before it (or after it, at the start of a segment)."""
    if not isinstance(items, list):
        raise TranscriptError(f"{where}: 'words' must be a list, found {type(items).__name__}")
    words: list[Word] = []
    untimed: list[str] = []
    for i, item in enumerate(items):
        at = f"{where}.words[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("word"), str):
            raise TranscriptError(f"{at}: expected an object with 'word', 'start' and 'end'")
        text = item["word"].strip()
        if "start" not in item or "end" not in item:
            if words:
                last = words[-1]
                words[-1] = Word(last.start, last.end, f"{last.text} {text}")
            else:
                untimed.append(text)
            continue
        start, end = _span(item, at)
        words.append(Word(start, end, " ".join([*untimed, text])))
        untimed = []
    return tuple(w for w in words if w.text)


_SPECIAL_TOKEN = re.compile(r"^\[_[A-Z0-9_]+\]$|^<\|.*\|>$")


def _token_words(tokens: Any, where: str) -> tuple[Word, ...]:
    """Words from whisper.cpp `-ojf` tokens: a token that starts with a space starts a word,
    others (sub-word pieces, punctuation) extend the word before; special tokens are skipped."""
    if not isinstance(tokens, list):
        raise TranscriptError(f"{where}: 'tokens' must be a list, found {type(tokens).__name__}")
    words: list[Word] = []
    for i, token in enumerate(tokens):
        at = f"{where}.tokens[{i}]"
        if not isinstance(token, dict) or not isinstance(token.get("text"), str):
            raise TranscriptError(f"{at}: expected an object with 'text' and 'offsets'")
        text = token["text"]
        if _SPECIAL_TOKEN.match(text.strip()) or not text.strip():
            continue
        start, end = _span(token, at)
        if words and not text[0].isspace():
            last = words[-1]
            words[-1] = Word(last.start, max(last.end, end), last.text + text)
        else:
            words.append(Word(start, end, text.strip()))
    return tuple(words)


_SRT_TIMING = re.compile(
    r"^\s*(\d+):(\d{2}):(\d{2})[,.](\d{3})\s*-->\s*(\d+):(\d{2}):(\d{2})[,.](\d{3})", re.M
)
_VTT_TIMING = re.compile(
    r"^\s*(?:(\d+):)?(\d{2}):(\d{2})\.(\d{3})\s+-->\s+(?:(\d+):)?(\d{2}):(\d{2})\.(\d{3})"
)
_SRT_SPEAKER = re.compile(r"^\[([^\]]+)\] (.*)$", re.S)
_VTT_VOICE = re.compile(r"^<v(?:\.[^\s>]*)?\s+([^>]+)>(.*)$", re.S)
_VTT_TAG = re.compile(r"<[^>]*>")


def _seconds(hours: str | None, minutes: str, seconds: str, millis: str) -> float:
    return (((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis)) / 1000


def _blocks(text: str) -> list[list[str]]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    return [b for b in blocks if b]


def _cue(
    start: float, end: float, text: str, speaker: str | None, where: str
) -> Segment:
    if end < start:
        raise TranscriptError(f"{where}: ends ({end:.3f} s) before it starts ({start:.3f} s)")
    return Segment(start, end, text.strip(), (), speaker)


def _parse_srt(text: str, source: str) -> list[Segment]:
    segments = []
    for number, block in enumerate(_blocks(text), 1):
        timing_at = 1 if len(block) > 1 and block[0].strip().isdigit() else 0
        match = _SRT_TIMING.match(block[timing_at])
        if match is None:
            raise TranscriptError(
                f"{source}: SRT cue {number}: no 'HH:MM:SS,mmm --> HH:MM:SS,mmm' line"
            )
        g = match.groups()
        body = " ".join(line.strip() for line in block[timing_at + 1 :])
        voiced = _SRT_SPEAKER.match(body)
        speaker, body = (voiced.group(1), voiced.group(2)) if voiced else (None, body)
        where = f"{source}: SRT cue {number}"
        segments.append(_cue(_seconds(*g[:4]), _seconds(*g[4:]), body, speaker, where))
    return segments


def _parse_vtt(text: str, source: str) -> list[Segment]:
    segments = []
    for number, block in enumerate(_blocks(text)[1:], 1):
        if block[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        timing_at = next((i for i, line in enumerate(block[:2]) if "-->" in line), None)
        match = _VTT_TIMING.match(block[timing_at]) if timing_at is not None else None
        if match is None:
            raise TranscriptError(
                f"{source}: WebVTT cue {number}: no 'MM:SS.mmm --> MM:SS.mmm' line"
            )
        g = match.groups()
        body = " ".join(line.strip() for line in block[timing_at + 1 :])
        voiced = _VTT_VOICE.match(body)
        speaker = html.unescape(voiced.group(1).strip()) if voiced else None
        body = html.unescape(_VTT_TAG.sub("", voiced.group(2) if voiced else body))
        where = f"{source}: WebVTT cue {number}"
        segments.append(_cue(_seconds(*g[:4]), _seconds(*g[4:]), body, speaker, where))
    return segments
