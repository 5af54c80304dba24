import io
import json
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from streamdiar.core.types import Turn
from streamdiar.evaluation import load_rttm
from streamdiar.stream.sinks import JsonlWriter, OutputError, RttmWriter, TimelinePrinter

labels = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)


@st.composite
def committed(draw: st.DrawFn) -> tuple[str, Turn]:
    """A (uri, turn) with times on a millisecond grid, as RTTM keeps them."""
    start_ms = draw(st.integers(0, 10_000_000))
    end_ms = start_ms + draw(st.integers(1, 600_000))
    return draw(labels), Turn(start_ms / 1000, end_ms / 1000, draw(labels))


def as_ms(annotations) -> dict[str, list[tuple[int, int, str]]]:
    return {
        uri: sorted(
            (round(segment.start * 1000), round(segment.end * 1000), label)
            for segment, _, label in annotation.itertracks(yield_label=True)
        )
        for uri, annotation in annotations.items()
    }


@settings(max_examples=50, deadline=None)
@given(st.lists(committed(), max_size=30))
def test_rttm_round_trip(tmp_path_factory, turns):
    path = tmp_path_factory.mktemp("rttm") / "out.rttm"
    with RttmWriter(path) as writer:
        for uri, turn in turns:
            writer.write(uri, turn)

    expected: dict[str, list[tuple[int, int, str]]] = {}
    for uri, turn in turns:
        expected.setdefault(uri, []).append(
            (round(turn.start * 1000), round(turn.end * 1000), turn.speaker)
        )
    assert as_ms(load_rttm(path)) == {uri: sorted(rows) for uri, rows in expected.items()}


def test_rttm_readable_after_every_write_before_close(tmp_path):
    path = tmp_path / "out.rttm"
    writer = RttmWriter(path)
    turns = [Turn(0.0, 1.5, "SPEAKER_00"), Turn(1.5, 4.25, "SPEAKER_01"), Turn(5, 6, "SPEAKER_00")]
    for count, turn in enumerate(turns, start=1):
        writer.write("meeting", turn)
        # What a reader sees if the process dies right now.
        assert path.read_text().endswith("\n")
        assert len(list(load_rttm(path)["meeting"].itertracks())) == count
    writer.close()


def test_rttm_line_format_and_whitespace_in_fields(tmp_path):
    path = tmp_path / "out.rttm"
    with RttmWriter(path) as writer:
        writer.write("my  file\tname", Turn(1.5, 3.25, "Ada Lovelace"))
    assert path.read_text() == (
        "SPEAKER my__file_name 1 1.500 1.750 <NA> <NA> Ada_Lovelace <NA> <NA>\n"
    )


def test_rttm_truncates_existing_file(tmp_path):
    path = tmp_path / "out.rttm"
    path.write_text("old content\n")
    RttmWriter(path).close()
    assert path.read_text() == ""


def test_rttm_missing_directory(tmp_path):
    path = tmp_path / "missing" / "out.rttm"
    with pytest.raises(OutputError, match="does not exist") as caught:
        RttmWriter(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_rttm_path_is_a_directory(tmp_path):
    with pytest.raises(OutputError, match="is a directory") as caught:
        RttmWriter(tmp_path)
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_rttm_directory_not_writable(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            RttmWriter(tmp_path / "out.rttm")
    finally:
        tmp_path.chmod(0o700)


class FlushChecked(io.StringIO):
    """Asserts that every flush leaves whole lines behind, and counts the flushes."""

    flushes = 0

    def flush(self) -> None:
        assert self.getvalue().endswith("\n")
        self.flushes += 1
        super().flush()


def test_jsonl_turns_and_events():
    stream = FlushChecked()
    writer = JsonlWriter(stream)
    writer.write("talk", Turn(1.23456, 2.5, "SPEAKER_00"))
    writer.write_event({"event": "done", "uri": "talk"})
    writer.write("talk", Turn(3.0004, 7.1, "SPEAKER_01"))

    lines = stream.getvalue().splitlines()
    assert stream.flushes == len(lines) == 3
    events = [json.loads(line) for line in lines]
    assert events[0] == {
        "event": "turn",
        "uri": "talk",
        "start": 1.235,
        "end": 2.5,
        "speaker": "SPEAKER_00",
    }
    assert events[1] == {"event": "done", "uri": "talk"}
    assert (events[2]["start"], events[2]["end"]) == (3.0, 7.1)


def test_jsonl_defaults_to_stdout(capsys):
    JsonlWriter().write("x", Turn(0, 1, "SPEAKER_00"))
    assert json.loads(capsys.readouterr().out)["speaker"] == "SPEAKER_00"


def test_timeline_lines_headers_and_colours():
    out = io.StringIO()
    printer = TimelinePrinter(Console(file=out, force_terminal=True, color_system="standard"))
    printer.write("first [bold]file", Turn(12.34, 15.6, "SPEAKER_00"))
    printer.write("first [bold]file", Turn(15.6, 20, "SPEAKER_01"))
    printer.write("second", Turn(0.5, 1, "SPEAKER_00"))
    printer.write("second", Turn(0.8, 2, "SPEAKER_01"))
    printer.write("second", Turn(1.5, 3, "SPEAKER_00"))

    plain = re.sub(r"\x1b\[[\d;]*m", "", out.getvalue()).splitlines()
    assert plain == [
        "first [bold]file",
        "  12.34 →  15.60  SPEAKER_00",
        "  15.60 →  20.00  SPEAKER_01",
        "second",
        "   0.50 →   1.00  SPEAKER_00",
        "   0.80 →   2.00  SPEAKER_01  overlaps SPEAKER_00 0.80–1.00",
        "   1.50 →   3.00  SPEAKER_00  overlaps SPEAKER_01 1.50–2.00",
    ]
    colours = re.findall(r"\x1b\[([\d;]+)m(SPEAKER_\d\d)", out.getvalue())
    by_speaker: dict[str, set[str]] = {}
    for colour, speaker in colours:
        by_speaker.setdefault(speaker, set()).add(colour)
    assert len(colours) == 5
    assert by_speaker["SPEAKER_00"] != by_speaker["SPEAKER_01"]
    assert all(len(used) == 1 for used in by_speaker.values())
