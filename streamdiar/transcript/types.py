"""Transcript values: what a transcriber gives, and what alignment adds to it."""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN_SPEAKER = "unknown"


@dataclass(frozen=True)
class Word:
    start: float  # seconds
    end: float  # seconds
    text: str  # without surrounding whitespace


@dataclass(frozen=True)
class Segment:
    """One transcribed stretch; `words` is empty when the transcriber gave no word times.

    `speaker` is set only when the input already names one (an SRT or WebVTT file written by
    streamdiar), so that written transcripts read back as they were written.
    """

    start: float  # seconds
    end: float  # seconds
    text: str
    words: tuple[Word, ...] = ()
    speaker: str | None = None


@dataclass(frozen=True)
class LabelledWord:
    word: Word
    speaker: str
    others: tuple[str, ...] = ()  # speakers talking over `speaker` during this word


@dataclass(frozen=True)
class LabelledSegment:
    """A segment (or the part of one) said by one speaker."""

    start: float  # seconds
    end: float  # seconds
    text: str
    speaker: str
    others: tuple[str, ...] = ()  # speakers heard over `speaker` in this stretch
    words: tuple[LabelledWord, ...] = ()

    def renamed(self, names: dict[str, str]) -> LabelledSegment:
        """The same segment with speaker labels replaced by the names given for them."""
        def name(label: str) -> str:
            return names.get(label, label)

        return LabelledSegment(
            self.start,
            self.end,
            self.text,
            name(self.speaker),
            tuple(map(name, self.others)),
            tuple(
                LabelledWord(w.word, name(w.speaker), tuple(map(name, w.others)))
                for w in self.words
            ),
        )
