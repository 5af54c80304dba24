"""`streamdiar transcript` end to end: speakers of the sample's utterances, --follow timing,
and bad inputs."""

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import streamdiar
from streamdiar.core.types import Turn
from streamdiar.evaluation import load_rttm
from streamdiar.transcript.align import TurnIndex, label_segment
from streamdiar.transcript.readers import read_transcript
from streamdiar.transcript.types import Segment

FIXTURES = Path(__file__).parent / "fixtures" / "transcripts"
FORMATS = sorted(p.name for p in FIXTURES.iterdir())


def stm_utterances(shared_data: Path) -> list[tuple[float, float, str, str]]:
    """(start, end, speaker, words) of each line of sample.stm."""
    lines = (shared_data / "dev" / "sample.stm").read_text().splitlines()
    return [
        (float(f[3]), float(f[4]), f[2], f[5]) for f in (line.split(maxsplit=5) for line in lines)
    ]


def rttm_turns(path: Path) -> list[Turn]:
    (annotation,) = load_rttm(path).values()
    return [Turn(s.start, s.end, label) for s, _, label in annotation.itertracks(yield_label=True)]


def utterance_speakers(turns: list[Turn], segments: list[Segment]) -> list[str]:
    """The speaker over most of each segment, after splitting at speaker changes."""
    index = TurnIndex(turns)
    speakers = []
    for segment in segments:
        spoken: dict[str, float] = {}
        for piece in label_segment(index, segment)[0]:
            spoken[piece.speaker] = spoken.get(piece.speaker, 0.0) + piece.end - piece.start
        speakers.append(max(spoken, key=spoken.__getitem__))
    return speakers


def mapped_accuracy(labels: list[str], names: list[str]) -> float:
    """Share of utterances right under the best one-to-one mapping of labels to names."""
    found = sorted(set(labels))
    options = sorted(set(names)) + [None] * len(found)
    best = max(
        sum(dict(zip(found, choice))[label] == name for label, name in zip(labels, names))
        for choice in itertools.permutations(options, len(found))
    )
    return best / len(names)


WESPEAKER_CHECKPOINT = "STREAMDIAR_TEST_EMBEDDING"


def transcribe_sample(run_cli, shared_data: Path, out: Path, *backend: str) -> Path:
    """`transcript` of sample.wav to out/out.srt and out/out.rttm with the given backend flags."""
    result = run_cli(
        "transcript", shared_data / "dev" / "sample.wav",
        "--whisper", FIXTURES / "openai_whisper.json",
        "-o", out / "out.srt", "--rttm", out / "out.rttm",
        "--speaker-names", "SPEAKER_00=Alice", "--progress", "none", "--device", "cpu", *backend,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def merged(run_cli, shared_data, tmp_path_factory):
    """The one diarization of sample.wav in this module by the default backend."""
    return transcribe_sample(run_cli, shared_data, tmp_path_factory.mktemp("transcript"))


@pytest.fixture(scope="module")
def merged_by_pyannote(run_cli, shared_data, tmp_path_factory):
    """The diarization of sample.wav by the pyannote backend with the trained WeSpeaker
    encoder, where its checkpoint is on the machine (segmentation-3.0 is the packaged one)."""
    embedding = os.environ.get(WESPEAKER_CHECKPOINT)
    if not embedding:
        pytest.skip(
            f"needs the trained WeSpeaker encoder: set {WESPEAKER_CHECKPOINT} to the "
            "pytorch_model.bin of pyannote/wespeaker-voxceleb-resnet34-LM"
        )
    out = tmp_path_factory.mktemp("transcript-pyannote")
    return transcribe_sample(
        run_cli, shared_data, out, "--backend", "pyannote", "--embedding", embedding
    )


def stm_accuracy(turns: list[Turn], shared_data: Path, name: str) -> float:
    """Share of sample.stm's utterances that fixture `name` merged with `turns` gives the
    speaker the STM names, after the best mapping of labels to names."""
    labels = utterance_speakers(turns, read_transcript(FIXTURES / name))
    return mapped_accuracy(labels, [u[2] for u in stm_utterances(shared_data)])


def test_every_fixture_holds_the_13_utterances_of_the_stm(shared_data):
    utterances = stm_utterances(shared_data)
    for name in FORMATS:
        segments = read_transcript(FIXTURES / name)
        times = [t for s in segments for t in (s.start, s.end)]
        assert times == pytest.approx([t for u in utterances for t in u[:2]], abs=0.0005), name
        assert [s.text for s in segments] == [u[3] for u in utterances], name


@pytest.mark.parametrize("name", FORMATS)
def test_fixture_with_the_reference_turns_names_the_stm_speakers(shared_data, name):
    """The aligner itself: given the true turns of sample.rttm, every utterance is right."""
    turns = rttm_turns(shared_data / "dev" / "sample.rttm")
    assert stm_accuracy(turns, shared_data, name) == 1.0


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_labels_like_the_stm_times_with_the_diarization(merged, shared_data, name):
    """Words or segments, any format: the same speaker per utterance as the STM's own times."""
    turns = rttm_turns(merged / "out.rttm")
    stm = [Segment(u[0], u[1], u[3]) for u in stm_utterances(shared_data)]
    assert utterance_speakers(turns, read_transcript(FIXTURES / name)) == utterance_speakers(
        turns, stm
    )


@pytest.mark.parametrize("name", FORMATS)
def test_fixture_with_the_diarization_names_the_stm_speakers(merged, shared_data, name):
    """The default backend's streamed diarization: at least 12 of the 13 utterances."""
    assert round(13 * stm_accuracy(rttm_turns(merged / "out.rttm"), shared_data, name)) >= 12


@pytest.mark.parametrize("name", FORMATS)
def test_fixture_with_the_pyannote_diarization_names_the_stm_speakers(
    merged_by_pyannote, shared_data, name
):
    assert stm_accuracy(rttm_turns(merged_by_pyannote / "out.rttm"), shared_data, name) >= 0.85


def test_transcript_writes_srt_cues_with_the_committed_speakers(merged):
    cues = read_transcript(merged / "out.srt")
    turns = rttm_turns(merged / "out.rttm")
    assert {c.speaker for c in cues} == {"Alice", "SPEAKER_01"}  # renamed, and not renamed
    assert len(cues) >= 13
    for cue in cues:
        label = "SPEAKER_00" if cue.speaker == "Alice" else cue.speaker
        overlap = {
            t.speaker: min(cue.end, t.end) - max(cue.start, t.start)
            for t in turns
            if min(cue.end, t.end) > max(cue.start, t.start)
        }
        if overlap:
            assert max(overlap, key=overlap.__getitem__) == label, cue


def _stamped_lines(stream, sink: list) -> None:
    for line in stream:
        sink.append((time.monotonic(), line))


@pytest.mark.realtime  # lines are timed against the commits
def test_follow_writes_each_line_once_its_span_is_committed(shared_data, tmp_path):
    """A writer appends segments while the audio is diarized; stderr's [PROGRESS] lines say
    how far the diarization is final, and when."""
    latency = 1.0
    utterances = stm_utterances(shared_data)
    lines = [json.dumps({"start": u[0], "end": u[1], "text": u[3]}) + "\n" for u in utterances]
    early = 7  # lines there before the diarization starts: they must wait for it
    growing = tmp_path / "live.jsonl"
    growing.write_text("".join(lines[:early]))
    command = [
        sys.executable, "-m", "streamdiar.cli", "transcript", shared_data / "dev" / "sample.wav",
        "--whisper", growing, "--follow", "--idle", "1", "--format", "srt",
        "--latency", str(latency), "--progress", "plain", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(streamdiar.__file__).resolve().parents[1])}
    process = subprocess.Popen(
        list(map(str, command)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    out: list = []
    err: list = []
    readers = [
        threading.Thread(target=_stamped_lines, args=(process.stdout, out)),
        threading.Thread(target=_stamped_lines, args=(process.stderr, err)),
    ]
    for reader in readers:
        reader.start()
    appended = [time.monotonic()] * early
    deadline = time.monotonic() + 120
    while not any("x realtime" in line for _, line in err) and time.monotonic() < deadline:
        time.sleep(0.05)  # the diarization has started
    with growing.open("a") as file:
        for line in lines[early:]:
            appended.append(time.monotonic())
            file.write(line)
            file.flush()
            time.sleep(0.3)
    assert process.wait(timeout=120) == 0, "".join(line for _, line in err)
    for reader in readers:
        reader.join()

    progress = [
        (t, float(m.group(1)))
        for t, line in err
        if (m := re.search(r"\[PROGRESS\] (?:done )?sample\.wav ([\d.]+)/", line))
    ]
    cues = []  # (time the cue's text line arrived, start, end)
    for i, (_, line) in enumerate(out):
        if "-->" in line:
            start, end = (_srt_seconds(x) for x in line.split(" --> "))
            cues.append((out[i + 1][0], start, end))
    assert len(cues) >= len(utterances), "".join(line for _, line in out)
    assert [c[1] for c in cues] == sorted(c[1] for c in cues)  # in order
    jitter = 0.05  # s between the two pipes' reader threads
    for written, start, end in cues:
        i = max(k for k, u in enumerate(utterances) if u[0] <= start + 1e-3)
        segment_end = utterances[i][1]
        not_yet = [t for t, position in progress if position < segment_end]
        assert all(t < written + jitter for t in not_yet), (start, end, "written before commit")
        committed = min(t for t, position in progress if position >= segment_end)
        ready = max(committed, appended[i])
        assert written - ready <= latency + 1.0, (start, end, written - ready)


def _srt_seconds(clock: str) -> float:
    h, m, s = clock.strip().replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _bad(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("empty.json", "", "empty file"),
        ("shape.json", '{"results": []}', "expected whisper.cpp JSON"),
        ("beyond.json", '{"segments": [{"start": 31, "end": 33, "text": "hi"}]}', "beyond the end"),
        ("reversed.json", '{"segments": [{"start": 3, "end": 2, "text": "hi"}]}', "before it starts"),
    ],
)
def test_bad_transcripts_end_in_one_line_and_exit_2(run_cli, shared_data, tmp_path, name, text, expected):
    whisper = _bad(tmp_path, name, text)
    result = run_cli("transcript", shared_data / "dev" / "sample.wav", "--whisper", whisper)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("streamdiar: error: ")
    assert expected in result.stderr and str(whisper) in result.stderr


def test_bad_flags_end_in_one_line_and_exit_2(run_cli, shared_data):
    sample = shared_data / "dev" / "sample.wav"
    whisper = FIXTURES / "sample.srt"
    for args in (
        ["--speaker-names", "SPEAKER_00"],
        ["-o", "out.docx"],
        ["--whisper", "-"],  # standard input only with --follow
    ):
        result = run_cli("transcript", sample, "--whisper", whisper, *args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (args, result.stderr)
