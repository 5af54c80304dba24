import json

import pytest

from streamdiar.transcript.readers import TranscriptError, check_times, parse_transcript
from streamdiar.transcript.types import Segment, Word


def test_whisper_cpp_full_tokens_become_words_without_special_tokens():
    token = lambda text, start, end: {"text": text, "offsets": {"from": start, "to": end}}  # noqa: E731
    document = {
        "transcription": [
            {
                "offsets": {"from": 1000, "to": 2500},
                "text": " Originally, yes",
                "tokens": [
                    token("[_BEG_]", 1000, 1000),
                    token(" Origin", 1000, 1400),
                    token("ally", 1400, 1800),
                    token(",", 1800, 1800),
                    token(" yes", 2000, 2500),
                    token("[_TT_75]", 2500, 2500),
                ],
            }
        ]
    }
    (segment,) = parse_transcript(json.dumps(document), "cpp.json")
    assert (segment.start, segment.end, segment.text) == (1.0, 2.5, "Originally, yes")
    assert segment.words == (Word(1.0, 1.8, "Originally,"), Word(2.0, 2.5, "yes"))


def test_whisperx_words_without_times_join_a_timed_neighbour():
    document = {
        "segments": [
            {
                "start": 0.0,
                "end": 2.0,
                "text": "7 days later",
                "words": [
                    {"word": "7"},
                    {"word": "days", "start": 0.3, "end": 0.8},
                    {"word": "later", "start": 0.9, "end": 1.5},
                    {"word": "2024"},
                ],
            }
        ]
    }
    (segment,) = parse_transcript(json.dumps(document), "x.json")
    assert segment.words == (Word(0.3, 0.8, "7 days"), Word(0.9, 1.5, "later 2024"))


def test_unordered_segments_are_sorted_and_overlapping_ones_kept():
    lines = [
        {"start": 5.0, "end": 6.0, "text": "later"},
        {"start": 1.0, "end": 3.0, "text": "first"},
        {"start": 2.5, "end": 4.0, "text": "overlaps first"},
    ]
    segments = parse_transcript("\n".join(map(json.dumps, lines)), "x.jsonl")
    assert [s.text for s in segments] == ["first", "overlaps first", "later"]


def test_times_a_little_past_the_audio_are_clipped_and_beyond_it_an_error():
    fits = Segment(28.0, 30.3, "end", (Word(28.0, 30.3, "end"),))
    (clipped,) = check_times([fits], 30.0, "t.json")
    assert clipped.end == 30.0 and clipped.words[0].end == 30.0
    with pytest.raises(TranscriptError, match="beyond the end of the audio"):
        check_times([Segment(29.0, 31.0, "late")], 30.0, "t.json")
    assert check_times([Segment(29.0, 99.0, "x")], None, "t.json")  # length unknown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("  \n\n", "empty file"),
        ('{"text": "hi"}', "found an object with keys text"),
        ("42", "unknown format"),
        ('{"segments": {"start": 1}}', "expected a list of segments"),
        ('{"segments": [{"start": "1", "end": 2, "text": ""}]}', "'start' must be a number"),
        ('{"segments": [{"start": -1, "end": 2, "text": ""}]}', "must not be negative"),
        ('{"segments": [{"start": 1, "end": 2, "text": "", "words": [{"start": 1}]}]}', "'word'"),
        ('{"start": 1, "end": 2, "text": "a"}\n{"start": 1', "line 2: not JSON"),
        ("1\n00:00:01,000 --> 00:00:02,000\nhi\n\n2\nhello\n", "SRT cue 2"),
        ("WEBVTT\n\n00:01.000 -> 00:02.000\nhi\n", "WebVTT cue 1"),
    ],
)
def test_bad_transcripts_raise_one_line_naming_the_file(text, message):
    with pytest.raises(TranscriptError) as raised:
        parse_transcript(text, "in.json")
    assert message in str(raised.value) and str(raised.value).startswith("in.json")
    assert "\n" not in str(raised.value)
