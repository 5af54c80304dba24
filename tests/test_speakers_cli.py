"""Known speakers end to end: `streamdiar enroll`, `streamdiar speakers`, `--speakers` on the
development recordings, and the errors a user can cause."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_transcript_cli import rttm_turns, stm_utterances, utterance_speakers

from streamdiar.core.types import SAMPLE_RATE, Turn
from streamdiar.enrolment import first_speech, reference_spans
from streamdiar.speaker_store import SpeakerStore, SpeakerStoreError
from streamdiar.stream.sinks import rttm_line
from streamdiar.transcript.types import Segment

PEOPLE = {"Diane": "speaker90", "Sheila": "speaker91"}  # sample.stm's names, sample.rttm's labels
ENROLMENT_SPEECH = 8.0  # s: each person's first seconds of speech


def one_error_line(result, message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("streamdiar: error: ") and message in lines[0], lines[0]


@pytest.fixture(scope="module")
def enrolled(run_cli, shared_data, tmp_path_factory) -> Path:
    """A store holding Diane and Sheila, each from their first 8 s of speech in sample.wav."""
    folder = tmp_path_factory.mktemp("speakers")
    store = folder / "speakers.sqlite"
    sample = shared_data / "dev" / "sample.wav"
    for name, label in PEOPLE.items():
        spans = reference_spans(shared_data / "dev" / "sample.rttm", "sample", label)
        first = folder / f"{name}.rttm"
        first.write_text(
            "".join(rttm_line("sample", Turn(s, e, label)) for s, e in first_speech(spans, 8.0))
        )
        result = run_cli("enroll", name, sample, "--rttm", first, "--speaker", label, "--db", store)
        assert result.returncode == 0, result.stderr
        assert f"{name}: 1 voiceprints added (1 in all)" in result.stderr
    return store


def copied(store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy.sqlite"
    shutil.copy(store, copy)
    return copy


def test_speakers_list_shows_each_person_and_the_model(run_cli, enrolled):
    result = run_cli("speakers", "list", "--db", enrolled)
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [line[:2] for line in lines] == [["Diane", "1 voiceprints"], ["Sheila", "1 voiceprints"]]
    assert all(line[2].startswith("campplus_cn_en_common sha256:") for line in lines)


@pytest.fixture(scope="module")
def named_sample(run_cli, shared_data, enrolled, tmp_path_factory) -> tuple[Path, list[dict]]:
    rttm = tmp_path_factory.mktemp("named") / "out.rttm"
    sample = shared_data / "dev" / "sample.wav"
    result = run_cli("diarize", sample, "--speakers", enrolled, "--rttm", rttm, "--jsonl")
    assert result.returncode == 0, result.stderr
    return rttm, [json.loads(line) for line in result.stdout.splitlines()]


def test_diarize_names_the_sample_utterances_after_the_enrolled_people(shared_data, named_sample):
    rttm, _ = named_sample
    utterances = stm_utterances(shared_data)
    spoken = utterance_speakers(rttm_turns(rttm), [Segment(u[0], u[1], u[3]) for u in utterances])
    right = sum(speaker == u[2] for speaker, u in zip(spoken, utterances))
    assert right >= 12, list(zip(spoken, [u[2] for u in utterances]))


def test_each_naming_is_an_event_before_the_first_turn_with_the_name(named_sample):
    _, events = named_sample
    namings = [e for e in events if e["event"] == "named"]
    assert sorted(e["speaker"] for e in namings) == ["Diane", "Sheila"]
    assert len({e["label"] for e in namings}) == 2
    for naming in namings:
        assert naming["label"].startswith("SPEAKER_") and naming["uri"] == "sample"
        position = events.index(naming)
        turns = [(i, e["speaker"]) for i, e in enumerate(events) if e["event"] == "turn"]
        assert position < min(i for i, speaker in turns if speaker == naming["speaker"])
        # the label's turns before the event keep it; none comes after
        assert all(speaker != naming["label"] for i, speaker in turns if i > position)


def test_other_people_are_not_named(run_cli, shared_data, enrolled, tmp_path):
    """Impostors: the four AMI voices of dev00 and dev01; at most 5 % of their speech named."""
    dev = shared_data / "dev"
    rttm = tmp_path / "out.rttm"
    result = run_cli(
        "diarize", dev / "dev00.wav", dev / "dev01.wav", "--speakers", enrolled, "--rttm", rttm
    )
    assert result.returncode == 0, result.stderr
    turns = [line.split() for line in rttm.read_text().splitlines()]
    named = sum(float(t[4]) for t in turns if t[7] in PEOPLE)
    assert named <= 0.05 * sum(float(t[4]) for t in turns), rttm.read_text()


def test_enrolling_a_name_again_adds_voiceprints_unless_replace(
    run_cli, shared_data, enrolled, tmp_path
):
    store = copied(enrolled, tmp_path)
    sample = shared_data / "dev" / "sample.wav"
    again = run_cli("enroll", "Diane", sample, "--db", store)
    assert again.returncode == 0, again.stderr
    with SpeakerStore(store) as opened:
        counts = {p.name: p.voiceprints for p in opened.people()}
    added = counts["Diane"] - 1
    assert added >= 3 and f"Diane: {added} voiceprints added ({added + 1} in all)" in again.stderr
    replaced = run_cli("enroll", "Diane", sample, "--db", store, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    with SpeakerStore(store) as opened:
        assert {p.name: p.voiceprints for p in opened.people()} == {"Diane": added, "Sheila": 1}


def test_speakers_remove_deletes_a_person(run_cli, enrolled, tmp_path):
    store = copied(enrolled, tmp_path)
    removed = run_cli("speakers", "remove", "Diane", "--db", store)
    assert removed.returncode == 0 and "Diane: 1 voiceprints deleted" in removed.stderr
    listed = run_cli("speakers", "list", "--db", store)
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["Sheila"]
    one_error_line(run_cli("speakers", "remove", "Diane", "--db", store), "nobody named 'Diane'")


def test_enrolment_audio_without_speech_is_refused(run_cli, tmp_path):
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(5 * SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    store = tmp_path / "speakers.sqlite"
    one_error_line(run_cli("enroll", "Alice", silence, "--db", store), "no speech of Alice found")
    assert not store.exists()


@pytest.fixture
def foreign_store(tmp_path) -> Path:
    """A store whose voiceprints another model made."""
    store = tmp_path / "foreign.sqlite"
    with SpeakerStore(store, create=True) as opened:
        opened.add("Alice", "embedded", np.ones((1, 256)), "alice.wav")
    return store


@pytest.fixture
def garbage_store(tmp_path) -> Path:
    store = tmp_path / "garbage.sqlite"
    store.write_bytes(b"not a database" * 100)
    return store


FOREIGN = "holds voiceprints of the model embedded"
NOT_A_STORE = "not a streamdiar speaker store"
SRT = "{fixtures}/sample.srt"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["diarize", "{dev}/sample.wav", "--speakers", "{foreign}"], FOREIGN),
        (["enroll", "Bob", "{dev}/sample.wav", "--db", "{foreign}"], FOREIGN),
        (["transcript", "{dev}/sample.wav", "--whisper", SRT, "--speakers", "{garbage}"], NOT_A_STORE),
        (["speakers", "list", "--db", "{garbage}"], NOT_A_STORE),
        (["speakers", "list", "--db", "{tmp}/missing.sqlite"], "no speaker store at"),
        (["enroll", "SPEAKER_01", "{dev}/sample.wav", "--db", "{tmp}/new.sqlite"], "not SPEAKER_NN"),
        (["enroll", "Bob", "{dev}/sample.wav", "--speaker", "x", "--db", "{tmp}/s.db"], "go together"),
    ],
    ids=["diarize-foreign", "enroll-foreign", "transcript-garbage", "list-garbage", "missing",
         "name", "rttm"],
)
def test_store_errors_exit_2_with_one_line(
    run_cli, shared_data, tmp_path, foreign_store, garbage_store, args, message
):
    places = {
        "dev": shared_data / "dev",
        "fixtures": Path(__file__).parent / "fixtures" / "transcripts",
        "tmp": tmp_path,
        "foreign": foreign_store,
        "garbage": garbage_store,
    }
    one_error_line(run_cli(*(arg.format(**places) for arg in args)), message)


def test_the_api_refuses_a_store_of_another_model(foreign_store):
    from streamdiar import Diarizer

    with pytest.raises(SpeakerStoreError, match="holds voiceprints of the model embedded"):
        Diarizer(speakers=foreign_store)


def test_transcript_cues_carry_the_names(run_cli, shared_data, enrolled, tmp_path):
    srt = tmp_path / "out.srt"
    fixture = Path(__file__).parent / "fixtures" / "transcripts" / "sample.srt"
    sample = shared_data / "dev" / "sample.wav"
    result = run_cli("transcript", sample, "--whisper", fixture, "-o", srt, "--speakers", enrolled)
    assert result.returncode == 0, result.stderr
    assert "is Diane (turns from" in result.stderr and "is Sheila (turns from" in result.stderr
    cues = srt.read_text()
    assert "[Diane] Okay, then I thought" in cues and "[Sheila] And I'm Sheila in Texas" in cues
    # a cue written before its speaker was named keeps the label; none after a name is given
    speakers = [line[1 : line.index("]")] for line in cues.splitlines() if line.startswith("[")]
    first_named = min(i for i, speaker in enumerate(speakers) if speaker in PEOPLE)
    assert all(speaker in PEOPLE for speaker in speakers[first_named:]), speakers


@pytest.mark.realtime  # the microphone plays at twice real time
def test_live_names_the_speakers_of_a_simulated_microphone(run_cli, shared_data, enrolled):
    sample = shared_data / "dev" / "sample.wav"
    result = run_cli(
        "live", "--simulate", sample, "--speed", "2", "--jsonl", "--speakers", enrolled
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    named = {e["speaker"] for e in events if e["event"] == "named"}
    assert named and named <= set(PEOPLE)
    assert named <= {e["speaker"] for e in events if e["event"] == "turn"}


def test_the_commands_import_no_torch_before_they_run():
    """The speaker commands' flags and names load with the CLI: without torch, so that --help
    is quick and the environment torch reads is set first."""
    code = "import sys, streamdiar.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout == "False\n", result.stderr
