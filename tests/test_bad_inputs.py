"""Whatever users feed the command line: valid-but-odd audio is diarized (exit 0), a user
mistake exits 2 and a runtime failure 1, each with one line on stderr and no traceback
unless --debug is given. Inputs are generated into tmp_path, from a few seconds of speech.

The valid-but-odd files all go through ONE `diarize` run (a fresh interpreter per file would
spend most of the suite importing torch); each is then checked as its own case.
"""

import json
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

SPEECH = (7.5, 11.5)  # s of sample.wav where both of its speakers talk
RATE = 16_000

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


@pytest.fixture(scope="module")
def speech(shared_data) -> np.ndarray:
    audio, rate = sf.read(shared_data / "dev" / "sample.wav", dtype="float32")
    assert rate == RATE
    start, end = SPEECH
    return audio[int(start * RATE) : int(end * RATE)]  # (samples,) mono


def speech_wav(folder: Path, speech: np.ndarray, name: str = "speech.wav") -> Path:
    path = folder / name
    sf.write(path, speech, RATE, subtype="PCM_16")
    return path


# A valid-but-odd input: (folder, speech, shared data) -> its path, its duration in seconds.
Make = Callable[[Path, np.ndarray, Path], tuple[Path, float]]


def written(name: str, rate: int = RATE, channels: int = 1, subtype: str = "PCM_16") -> Make:
    """Speech at `rate`, copied to `channels` channels (each quieter than the last)."""

    def make(folder: Path, speech: np.ndarray, data: Path) -> tuple[Path, float]:
        audio = soxr.resample(speech, RATE, rate) if rate != RATE else speech  # (samples,)
        audio = np.stack([audio * 0.9**c for c in range(channels)], axis=1)  # (samples, channels)
        sf.write(folder / name, audio, rate, subtype=subtype)
        return folder / name, len(speech) / RATE

    return make


def truncated(folder: Path, speech: np.ndarray, data: Path) -> tuple[Path, float]:
    """The header claims all the speech; the file holds 60 % of it."""
    path = speech_wav(folder, speech, "truncated.wav")
    size = path.stat().st_size
    kept = 44 + (size - 44) * 6 // 10 // 2 * 2
    path.write_bytes(path.read_bytes()[:kept])
    return path, (kept - 44) / 2 / RATE


def non_finite(folder: Path, speech: np.ndarray, data: Path) -> tuple[Path, float]:
    audio = speech.copy()
    audio[1000:1100] = np.nan
    audio[20_000:20_010] = np.inf
    audio[30_000:30_010] = -np.inf
    sf.write(folder / "nonfinite.wav", audio, RATE, subtype="FLOAT")
    return folder / "nonfinite.wav", len(audio) / RATE


def clipped(folder: Path, speech: np.ndarray, data: Path) -> tuple[Path, float]:
    return data / "dev" / "empty.wav", 1.0  # not empty: one second of saturated samples


def short(folder: Path, speech: np.ndarray, data: Path) -> tuple[Path, float]:
    return speech_wav(folder, speech[: int(0.2 * RATE)], "short.wav"), 0.2


def silence(folder: Path, speech: np.ndarray, data: Path) -> tuple[Path, float]:
    sf.write(folder / "silence.wav", np.zeros(60 * RATE, dtype=np.int16), RATE)
    return folder / "silence.wav", 60.0


def corrupt_mp3(folder: Path, speech: np.ndarray, data: Path) -> tuple[Path, float]:
    """An MP3 whose middle third is garbage."""
    path = folder / "corrupt.mp3"
    wav = speech_wav(folder, speech, "to-encode.wav")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", wav, path], check=True)
    wav.unlink()
    data_bytes = bytearray(path.read_bytes())
    third = len(data_bytes) // 3
    rng = np.random.default_rng(3)
    data_bytes[third : 2 * third] = rng.integers(0, 256, third, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data_bytes))
    return path, len(speech) / RATE


ODD: dict[str, tuple[Make, str | None]] = {
    # case: (its input, a warning expected on stderr)
    "pcm-8-bit": (written("pcm8.wav", subtype="PCM_U8"), None),
    "pcm-24-bit": (written("pcm24.wav", subtype="PCM_24"), None),
    "8-khz": (written("rate8k.wav", rate=8_000), None),
    "44.1-khz": (written("rate44k.wav", rate=44_100), None),
    "96-khz": (written("rate96k.wav", rate=96_000), None),
    "stereo": (written("stereo.wav", channels=2), None),
    "6-channels": (written("six.wav", channels=6), None),
    "truncated": (truncated, None),
    "nan-inf": (non_finite, "replaced 120 NaN/Inf samples with 0"),
    "clipped": (clipped, None),
    "shorter-than-a-window": (short, None),
    "60-s-of-silence": (silence, None),
    "corrupt-mp3": (corrupt_mp3, "ffmpeg reported errors"),
}


@pytest.fixture(scope="module")
def odd_run(run_cli, shared_data, speech, tmp_path_factory):
    """All valid-but-odd inputs in one `diarize --jsonl` run: the result, and per case the
    input and its duration."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    folder = tmp_path_factory.mktemp("odd")
    inputs = {case: make(folder, speech, shared_data) for case, (make, _) in ODD.items()}
    paths = [path for path, _ in inputs.values()]
    result = run_cli("diarize", *paths, "--jsonl", "--device", "cpu", "--progress", "none")
    return result, inputs


@pytest.mark.parametrize("case", list(ODD))
def test_valid_but_odd_input_is_diarized(odd_run, case):
    result, inputs = odd_run
    path, duration = inputs[case]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary = [line for line in result.stderr.splitlines() if line.startswith(f"{path.name}: ")]
    assert len(summary) == 1, result.stderr
    heard = float(summary[0].split()[1])
    if case == "corrupt-mp3":  # what could be decoded
        assert 0.5 <= heard <= duration, summary
    else:
        assert heard == pytest.approx(duration, abs=0.06), summary
    turns = [json.loads(line) for line in result.stdout.splitlines()]
    mine = [turn for turn in turns if turn["uri"] == path.stem]
    assert all(0 <= turn["start"] < turn["end"] <= duration + 0.05 for turn in mine), mine
    if case == "60-s-of-silence":
        assert mine == [] and " 0 speakers, " in summary[0], summary
    if case in ("pcm-24-bit", "44.1-khz", "96-khz", "stereo", "6-channels"):
        assert mine, f"no turn in {SPEECH[1] - SPEECH[0]:g} s of speech"
    warning = ODD[case][1]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("streamdiar: warning: ")]
    mentioned = [line for line in warnings if str(path) in line]
    if warning is None:
        assert mentioned == [], warnings
    else:
        assert len(mentioned) == 1 and warning in mentioned[0], warnings


def text_file(folder: Path) -> Path:
    path = folder / "notes.wav"
    path.write_text("these are meeting notes, not audio\n")
    return path


def empty_file(folder: Path) -> Path:
    path = folder / "empty.wav"
    path.touch()
    return path


def not_rttm(folder: Path) -> Path:
    path = folder / "hyp.rttm"
    path.write_text("SPEAKER meeting 1 zero 1.0 <NA> <NA> A <NA> <NA>\n")
    return path


# case: (arguments, exit code, what the one line on stderr says). In the arguments, {speech}
# is a 4 s WAV of speech, {tmp} a folder, {text} a text file named .wav, {empty} a 0-byte
# .wav, {ref} a reference RTTM and {bad_rttm} an RTTM line with a start that is no number.
BAD = {
    "missing-path": (["diarize", "{tmp}/nowhere.wav"], 2, "no such file: "),
    "directory": (["diarize", "{tmp}"], 2, "is a directory, not an audio file"),
    "0-byte-file": (["diarize", "{empty}"], 2, "is empty (0 bytes)"),
    "text-named-wav": (["diarize", "{text}"], 2, "cannot decode "),
    "unknown-flag": (["diarize", "{speech}", "--frobnicate"], 2, "unrecognized arguments: --frobnicate"),
    "no-audio-given": (["diarize"], 2, "the following arguments are required: AUDIO"),
    "negative-latency": (
        ["diarize", "{speech}", "--latency", "-1"], 2, "latency must be between 0.5 and 5 s"
    ),
    "latency-not-a-number": (["diarize", "{speech}", "--latency", "soon"], 2, "invalid float value: 'soon'"),
    "device-tpu": (["diarize", "{speech}", "--device", "tpu"], 2, "unknown device 'tpu'"),
    "step-longer-than-window": (
        ["diarize", "{speech}", "--step", "9"], 2, "step (9 s) must not exceed the window (8 s)"
    ),
    "infinite-window": (["diarize", "{speech}", "--window", "inf"], 2, "window must be a finite number"),
    "batch-size-0": (["diarize", "{speech}", "--batch-size", "0"], 2, "batch size must be at least 1"),
    "rttm-is-a-directory": (["diarize", "{speech}", "--rttm", "{tmp}"], 2, "it is a directory"),
    "rttm-disk-full": (
        ["diarize", "{speech}", "--rttm", "/dev/full"], 1, "No space left on device; it keeps the 0 turns"
    ),
    "eval-bad-rttm": (
        ["eval", "--ref", "{ref}", "--hyp", "{bad_rttm}"], 2, "line 1: start 'zero' is not a number"
    ),
    "eval-missing-uem": (
        ["eval", "--ref", "{ref}", "--hyp", "{ref}", "--uem", "{tmp}/none.uem"], 2, "no such file"
    ),
}


DEBUG = ["diarize", "{text}", "--debug"]


@pytest.fixture(scope="module")
def bad_runs(run_cli, shared_data, speech, tmp_path_factory) -> dict:
    """The result of each BAD case, and of DEBUG; the runs go side by side, as most of them
    only wait for an interpreter to start."""
    folder = tmp_path_factory.mktemp("bad")
    names = {
        "tmp": folder,
        "speech": speech_wav(folder, speech),
        "text": text_file(folder),
        "empty": empty_file(folder),
        "ref": shared_data / "dev" / "sample.rttm",
        "bad_rttm": not_rttm(folder),
    }
    cases = {case: args for case, (args, _, _) in BAD.items()} | {"debug": DEBUG}
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda args: run_cli(*(arg.format(**names) for arg in args)), cases.values())
        return dict(zip(cases, results))


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_with_one_line(bad_runs, case):
    _, code, message = BAD[case]
    if case == "rttm-disk-full" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    result = bad_runs[case]
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("streamdiar: error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    if code == 2:  # a user mistake: no work done, nothing said but the device chosen, if that
        assert [line for line in result.stderr.splitlines() if not line.startswith("[PROGRESS] ")] == errors
        assert result.stdout == ""


def test_debug_shows_the_traceback_others_do_not(bad_runs):
    result = bad_runs["debug"]
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "cannot decode " in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "choices"),
    [
        ("STREAMDIAR_RUNTIME", "tensorrt", "auto, onnx, openvino, openvino-bf16, torch"),
        ("STREAMDIAR_PRECISION", "float8", "auto, float32, float16"),
        ("STREAMDIAR_CUDA_GRAPHS", "maybe", "on, off"),
    ],
)
def test_unknown_runtime_or_precision_is_one_line_and_exit_2(
    run_cli, tmp_path, variable, value, choices
):
    audio = tmp_path / "silence.wav"
    sf.write(audio, np.zeros(RATE, np.float32), RATE)
    result = run_cli("diarize", audio, extra_env={variable: value})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"streamdiar: error: {variable} must be one of {choices}, got {value!r}"
    )
