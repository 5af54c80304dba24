import pytest
from pyannote.core import Annotation, Segment, Timeline

from streamdiar.evaluation import (
    EvaluationError,
    diarization_error_rate,
    format_report,
    load_rttm,
    load_uem,
)


def annotation(uri: str, *turns: tuple[float, float, str]) -> Annotation:
    result = Annotation(uri=uri)
    for track, (start, end, label) in enumerate(turns):
        result[Segment(start, end), track] = label
    return result


def segments(timeline: Timeline) -> list[tuple[float, float]]:
    return [(segment.start, segment.end) for segment in timeline]


# 20 s of reference speech. Against it the hypothesis misses 1 s of A (0-1), calls 4 s of B
# by A's hypothesis label (16-20: confusion under the best mapping s1=A, s2=B) and adds 3 s
# where nobody speaks (20-23).
REFERENCE = annotation("meeting", (0, 10, "A"), (10, 20, "B"))
HYPOTHESIS = annotation("meeting", (1, 10, "s1"), (10, 16, "s2"), (16, 20, "s1"), (20, 23, "s2"))


def test_known_components():
    report = diarization_error_rate({"meeting": REFERENCE}, {"meeting": HYPOTHESIS})
    assert report.total == pytest.approx(20)
    assert report.missed_s == pytest.approx(1)
    assert report.false_alarm_s == pytest.approx(3)
    assert report.confusion_s == pytest.approx(4)
    assert (report.der, report.missed, report.false_alarm, report.confusion) == pytest.approx(
        (0.40, 0.05, 0.15, 0.20)
    )
    assert report.per_uri["meeting"].der == pytest.approx(0.40)


def test_uem_crops_and_selects_files():
    reference = {"meeting": REFERENCE, "other": annotation("other", (0, 5, "A"))}
    uem = {"meeting": Timeline([Segment(0, 15)], uri="meeting")}
    report = diarization_error_rate(reference, {"meeting": HYPOTHESIS}, uem)
    assert list(report.per_uri) == ["meeting"]
    # Within 0-15 only the missed second at the start remains.
    assert (report.total, report.missed_s, report.false_alarm_s, report.confusion_s) == (
        pytest.approx((15, 1, 0, 0))
    )


def test_overlapped_speech_is_scored():
    reference = {"f": annotation("f", (0, 10, "A"), (5, 10, "B"))}
    hypothesis = {"f": annotation("f", (0, 10, "x"))}
    report = diarization_error_rate(reference, hypothesis)
    assert report.total == pytest.approx(15)
    assert report.missed_s == pytest.approx(5)
    assert report.der == pytest.approx(5 / 15)


def test_missing_hypothesis_counts_as_empty_and_extra_uris_are_ignored():
    reference = {"meeting": REFERENCE, "silent-system": annotation("silent-system", (0, 5, "A"))}
    hypothesis = {"meeting": HYPOTHESIS, "not-in-reference": annotation("x", (0, 100, "s"))}
    report = diarization_error_rate(reference, hypothesis)
    assert sorted(report.per_uri) == ["meeting", "silent-system"]
    assert report.per_uri["silent-system"].der == pytest.approx(1.0)
    assert report.per_uri["silent-system"].missed_s == pytest.approx(5)
    # Accumulated over files, each weighed by its reference speech: (8 + 5) / (20 + 5).
    assert report.der == pytest.approx(13 / 25)


def test_no_reference_speech():
    report = diarization_error_rate({}, {})
    assert (report.der, report.total, report.per_uri) == (0.0, 0.0, {})


def test_format_report():
    text = format_report(diarization_error_rate({"meeting": REFERENCE}, {"meeting": HYPOTHESIS}))
    lines = text.splitlines()
    assert lines[0].split() == ["uri", "DER", "missed", "false", "alarm", "confusion"]
    assert lines[1].split() == ["meeting", "40.00", "%", "5.00", "%", "15.00", "%", "20.00", "%"]
    assert lines[2].split()[0] == "overall"
    assert len({len(line) for line in lines}) == 1  # columns line up


def test_known_answer_from_shared_fixtures(shared_data):
    fixtures = shared_data / "metric-fixtures"
    reference = load_rttm(fixtures / "ref.rttm")
    hypothesis = load_rttm(fixtures / "sys.rttm")
    assert list(reference) == list(hypothesis) == ["FILE1"]

    # Collar 0, overlapped speech scored, no uem (test_write.uem there gives 10.50 % instead).
    report = diarization_error_rate(reference, hypothesis)
    assert 100 * report.der == pytest.approx(26.3931, abs=0.001)
    assert (report.total, report.missed_s, report.false_alarm_s, report.confusion_s) == (
        pytest.approx((31.046, 3.726, 1.043, 3.425))
    )
    assert "26.39 %" in format_report(report)


def test_uem_fixtures(shared_data):
    fixtures = shared_data / "metric-fixtures"
    written = load_uem(fixtures / "test_write.uem")
    assert {uri: segments(t) for uri, t in written.items()} == {
        "FILE1": [(0.0, 10.6)],
        "FILE2": [(4.5, 13.24)],
    }
    loaded = load_uem(fixtures / "test_load.uem")  # has a `;` comment line
    assert {uri: segments(t) for uri, t in loaded.items()} == {
        "FILE1": [(0.0, 15.0), (25.0, 30.4)],
        "FILE2": [(4.5, 13.24)],
    }


def test_rttm_keeps_labels_pandas_would_read_as_missing(tmp_path):
    path = tmp_path / "odd.rttm"
    path.write_text(
        ";; a comment\n"
        "\n"
        "SPKR-INFO NA 1 <NA> <NA> <NA> unknown NA <NA> <NA>\n"
        "SPEAKER NA 1 0.000 1.000 <NA> <NA> NA <NA> <NA>\n"
        "SPEAKER NA 1 1.000 1.000 <NA> <NA> null <NA>\n"
    )
    tracks = list(load_rttm(path)["NA"].itertracks(yield_label=True))
    assert [(s.start, s.end, label) for s, _, label in tracks] == [(0, 1, "NA"), (1, 2, "null")]


RTTM_LINE = "SPEAKER f 1 0.000 1.000 <NA> <NA> spk <NA> <NA>\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("SPEAKER f 1 0.000\n", "expected 10 RTTM fields, found 4"),
        (RTTM_LINE.replace("\n", " extra\n"), "expected 10 RTTM fields, found 11"),
        (RTTM_LINE.replace("0.000", "abc"), "start 'abc' is not a number"),
        (RTTM_LINE.replace("1.000", "-1"), "duration '-1' must be finite and not negative"),
        (RTTM_LINE.replace("1.000", "nan"), "duration 'nan' must be finite and not negative"),
        (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    ],
)
def test_malformed_rttm(tmp_path, content, message):
    path = tmp_path / "bad.rttm"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(RTTM_LINE + content)
    with pytest.raises(EvaluationError, match=message) as caught:
        load_rttm(path)
    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("f 1 0\n", "expected 4 UEM fields, found 3"),
        ("f 1 0 x\n", "end 'x' is not a number"),
        ("f 1 5 2\n", "end 2.0 is before start 5.0"),
    ],
)
def test_malformed_uem(tmp_path, content, message):
    path = tmp_path / "bad.uem"
    path.write_text(content)
    with pytest.raises(EvaluationError, match=message) as caught:
        load_uem(path)
    assert str(caught.value).startswith(str(path))


@pytest.mark.parametrize("load", [load_rttm, load_uem])
def test_missing_or_directory(tmp_path, load):
    with pytest.raises(EvaluationError, match="no such file"):
        load(tmp_path / "absent")
    with pytest.raises(EvaluationError, match="is a directory"):
        load(tmp_path)
