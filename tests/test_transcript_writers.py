import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from streamdiar.transcript.readers import parse_transcript
from streamdiar.transcript.types import LabelledSegment, LabelledWord, Word
from streamdiar.transcript.writers import TranscriptWriter


def written(kind: str, segments: list[LabelledSegment]) -> str:
    stream = io.StringIO()
    writer = TranscriptWriter(stream, kind)
    for segment in segments:
        writer.write(segment)
    writer.close()
    return stream.getvalue()


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1).map(
    lambda t: " ".join(t.split())
).filter(bool)
speakers = st.one_of(
    st.sampled_from(["SPEAKER_00", "SPEAKER_01", "unknown"]),
    texts.filter(lambda t: not any(c in t for c in "[]<>")),
)
labelled_segments = st.lists(
    st.tuples(st.integers(0, 10_000_000), st.integers(0, 60_000), texts, speakers).map(
        lambda s: LabelledSegment(s[0] / 1000, (s[0] + s[1]) / 1000, s[2], s[3])
    ),
    min_size=1,
    max_size=10,
).map(lambda segments: sorted(segments, key=lambda s: s.start))


@settings(max_examples=150, deadline=None)
@given(labelled_segments, st.sampled_from(["srt", "vtt"]))
def test_srt_and_vtt_read_back_as_written(segments, kind):
    back = parse_transcript(written(kind, segments), f"out.{kind}")
    assert [(s.start, s.end, s.text, s.speaker) for s in back] == [
        (s.start, s.end, s.text, s.speaker) for s in segments
    ]


def test_vtt_has_voice_tags_and_srt_speaker_prefixes():
    segment = LabelledSegment(1.5, 3661.25, "a <b> & c", "Alice")
    assert written("vtt", [segment]) == (
        "WEBVTT\n\n00:00:01.500 --> 01:01:01.250\n<v Alice>a &lt;b&gt; &amp; c\n"
    )
    assert written("srt", [segment]) == "1\n00:00:01,500 --> 01:01:01,250\n[Alice] a <b> & c\n\n"


def test_json_holds_segments_words_and_overlapping_speakers():
    word = LabelledWord(Word(0.0, 0.5, "hi"), "A", ("B",))
    document = json.loads(written("json", [LabelledSegment(0.0, 0.5, "hi", "A", ("B",), (word,))]))
    assert document == {
        "segments": [
            {
                "start": 0.0,
                "end": 0.5,
                "speaker": "A",
                "text": "hi",
                "overlapping_speakers": ["B"],
                "words": [
                    {"word": "hi", "start": 0.0, "end": 0.5, "speaker": "A", "overlapping_speakers": ["B"]}
                ],
            }
        ]
    }
    assert [s.text for s in parse_transcript(json.dumps(document), "out.json")] == ["hi"]


def test_text_and_markdown_group_segments_by_speaker_turn():
    segments = [
        LabelledSegment(0.0, 1.0, "Hello.", "Alice"),
        LabelledSegment(1.0, 2.0, "How are you?", "Alice"),
        LabelledSegment(62.0, 63.0, "Fine.", "Bob"),
    ]
    assert written("txt", segments) == "[00:00:00] Alice: Hello. How are you?\n\n[00:01:02] Bob: Fine.\n"
    assert written("md", segments) == (
        "**Alice** (00:00:00): Hello. How are you?\n\n**Bob** (00:01:02): Fine.\n"
    )


def test_renamed_replaces_the_labels_named():
    word = LabelledWord(Word(0.0, 0.5, "hi"), "SPEAKER_00", ("SPEAKER_01",))
    segment = LabelledSegment(0.0, 0.5, "hi", "SPEAKER_00", ("SPEAKER_01",), (word,))
    renamed = segment.renamed({"SPEAKER_00": "Alice"})
    assert (renamed.speaker, renamed.others) == ("Alice", ("SPEAKER_01",))
    assert (renamed.words[0].speaker, renamed.words[0].others) == ("Alice", ("SPEAKER_01",))
