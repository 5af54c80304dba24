"""The long-form test conversation generator: exact length, a reference that matches the
audio, the same files for the same seed, a speaker away for a chosen interval."""

import shutil

import numpy as np
import pytest
import soundfile as sf

from streamdiar import synthetic
from streamdiar.core.types import SAMPLE_RATE
from streamdiar.evaluation import load_rttm

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is absent")


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conversation")
    audio, rttm = folder / "talk.wav", folder / "talk.rttm"
    turns = synthetic.generate_conversation(audio, rttm, 45.0, 3, seed=5, absent=(10.0, 30.0))
    return audio, rttm, turns


def test_audio_has_the_length_and_format_asked_for(conversation) -> None:
    audio, _, _ = conversation
    info = sf.info(audio)
    assert (info.samplerate, info.channels, info.frames) == (SAMPLE_RATE, 1, 45 * SAMPLE_RATE)


def test_reference_turns_are_ordered_apart_and_inside_the_audio(conversation) -> None:
    _, rttm, turns = conversation
    reference = load_rttm(rttm)["talk"]
    segments = sorted(reference.itersegments())
    assert len(segments) == turns >= 3
    assert all(a.end <= b.start for a, b in zip(segments, segments[1:]))  # no overlap
    assert segments[0].start >= 0 and segments[-1].end <= 45.0
    assert set(reference.labels()) <= {"voice1", "voice2", "voice3"}


def test_speech_is_where_the_reference_says(conversation) -> None:
    audio, rttm, _ = conversation
    samples, _ = sf.read(audio, dtype="float32")
    speech = np.zeros(len(samples), dtype=bool)
    for segment in load_rttm(rttm)["talk"].itersegments():
        speech[round(segment.start * SAMPLE_RATE) : round(segment.end * SAMPLE_RATE)] = True
    inside = np.sqrt(np.mean(samples[speech] ** 2))
    outside = np.sqrt(np.mean(samples[~speech] ** 2))
    assert 20 * np.log10(inside / outside) > 30  # dB: pauses hold only room noise
    assert outside > 0  # but not digital silence


def test_last_speaker_says_nothing_while_absent(conversation) -> None:
    _, rttm, _ = conversation
    for segment, _, label in load_rttm(rttm)["talk"].itertracks(yield_label=True):
        if label == "voice3":
            assert segment.end <= 10.0 or segment.start >= 30.0


def test_same_seed_same_files(conversation, tmp_path) -> None:
    audio, rttm, _ = conversation
    again, again_rttm = tmp_path / "talk.wav", tmp_path / "talk.rttm"
    synthetic.generate_conversation(again, again_rttm, 45.0, 3, seed=5, absent=(10.0, 30.0))
    assert again.read_bytes() == audio.read_bytes()
    assert again_rttm.read_text() == rttm.read_text()


def test_missing_espeak_is_one_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(synthetic.shutil, "which", lambda name: None)
    with pytest.raises(synthetic.SynthesisError, match="apt-get install espeak-ng"):
        synthetic.generate_conversation(tmp_path / "a.wav", tmp_path / "a.rttm", 5.0, 2)


def test_generate_command_writes_audio_and_rttm(run_cli, tmp_path) -> None:
    result = run_cli("generate", tmp_path / "c.flac", "--seconds", "8", "--speakers", "2")
    assert result.returncode == 0, result.stderr
    assert sf.info(tmp_path / "c.flac").duration == 8.0
    assert load_rttm(tmp_path / "c.rttm")["c"].labels()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--speakers", "9"], "--speakers must be between 1 and 8"),
        (["--seconds", "0"], "--seconds must be positive"),
        (["--absent", "20:10"], "expected 0 <= START < END"),
    ],
)
def test_generate_command_refuses_bad_flags(run_cli, tmp_path, flags, message) -> None:
    result = run_cli("generate", tmp_path / "c.wav", *flags)
    assert result.returncode == 2 and message in result.stderr
