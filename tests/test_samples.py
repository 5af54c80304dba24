"""The scripts in samples/ run as a user runs them, on the development recordings: no
microphone (a stand-in for sounddevice plays a file into the callback) and no faster-whisper
(Whisper output from the fixtures)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamdiar import Turn, label_transcript, to_rttm

pytestmark = pytest.mark.realtime  # the stand-in microphone plays as fast as it is read

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FASTER_WHISPER = Path(__file__).parent / "fixtures" / "transcripts" / "faster_whisper.json"

# sounddevice's InputStream as samples/microphone.py uses it: plays $FAKE_MICROPHONE in the
# blocks asked for, then presses Ctrl-C as a user would.
FAKE_SOUNDDEVICE = '''
import os
import signal
import threading

import soundfile


class InputStream:
    def __init__(self, samplerate, channels, dtype, blocksize, device, callback):
        assert (samplerate, channels, dtype, device) == (16000, 1, "float32", None)
        self._blocksize, self._callback = blocksize, callback
        self._thread = threading.Thread(target=self._play)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._thread.join()

    def _play(self):
        path = os.environ["FAKE_MICROPHONE"]
        for block in soundfile.blocks(path, self._blocksize, dtype="float32", always_2d=True):
            self._callback(block, len(block), None, None)
        os.kill(os.getpid(), signal.SIGINT)
'''


def run_sample(
    script: str, *args: str | Path, path: tuple[Path, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """samples/`script` ARGS with the streamdiar under test, `path` first on PYTHONPATH."""
    paths = [*map(str, path), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]
    return subprocess.run(
        [sys.executable, PROJECT_ROOT / "samples" / script, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(filter(None, paths))},
        timeout=600,
    )


def printed_turns(stdout: str) -> list[tuple[str, str, str]]:
    return [tuple(line.split()) for line in stdout.splitlines()]


def as_printed(turns: list[Turn]) -> list[tuple[str, str, str]]:
    return [(f"{turn.start:.3f}", f"{turn.end:.3f}", turn.speaker) for turn in turns]


@pytest.fixture(scope="module")
def sample(shared_data) -> Path:
    return shared_data / "dev" / "sample.wav"


@pytest.fixture(scope="module")
def sample_turns(default_diarizer, sample) -> list[Turn]:
    turns = default_diarizer.diarize(sample)
    assert len({turn.speaker for turn in turns}) == 2
    return turns


@pytest.fixture(scope="module")
def live_sample_turns(live_diarizer, sample) -> list[Turn]:
    """The file's turns as live audio gets them (one window per batch): what a session that
    audio is pushed into gives, where a file's batches may differ."""
    turns = live_diarizer.diarize(sample)
    assert len({turn.speaker for turn in turns}) == 2
    return turns


def test_the_microphone_sample_prints_the_turns_of_a_file_it_plays(sample, live_sample_turns):
    result = run_sample("microphone.py", "--file", sample)
    assert result.returncode == 0, result.stderr
    assert printed_turns(result.stdout) == as_printed(live_sample_turns)


def test_the_microphone_sample_diarizes_all_it_heard_before_ctrl_c(
    sample, live_sample_turns, tmp_path
):
    (tmp_path / "sounddevice.py").write_text(FAKE_SOUNDDEVICE)
    result = run_sample("microphone.py", path=(tmp_path,), env={"FAKE_MICROPHONE": str(sample)})
    assert result.returncode == 0, result.stderr
    assert "Ctrl-C stops" in result.stderr
    assert printed_turns(result.stdout) == as_printed(live_sample_turns)


def test_the_transcript_sample_gives_whisper_output_its_speakers(sample, sample_turns, tmp_path):
    rttm = tmp_path / "turns.rttm"
    result = run_sample("transcribe_file.py", sample, "--whisper", FASTER_WHISPER, "--rttm", rttm)
    assert result.returncode == 0, result.stderr
    labelled = label_transcript(sample_turns, FASTER_WHISPER)
    assert len({piece.speaker for piece in labelled}) == 2
    assert result.stdout.splitlines() == [
        f"[{piece.start:7.2f} - {piece.end:7.2f}] {piece.speaker}: {piece.text}"
        for piece in labelled
    ]
    assert rttm.read_text() == to_rttm(sample_turns, "sample")
