import json

import pytest
import soundfile as sf
import torch

from streamdiar.evaluation import load_rttm


def test_eval_prints_the_der_of_the_dscore_fixtures(run_cli, shared_data):
    fixtures = shared_data / "metric-fixtures"
    result = run_cli("eval", "--ref", fixtures / "ref.rttm", "--hyp", fixtures / "sys.rttm")
    assert result.returncode == 0, result.stderr
    overall = [line for line in result.stdout.splitlines() if line.startswith("overall")]
    assert len(overall) == 1 and overall[0].split()[1] == "26.39", result.stdout


@pytest.fixture(scope="module")
def diarized(run_cli, shared_data, tmp_path_factory):
    """One run of `diarize --rttm --jsonl` on the sample, its stderr not a terminal."""
    rttm = tmp_path_factory.mktemp("diarize") / "out.rttm"
    result = run_cli(
        "diarize", shared_data / "dev" / "sample.wav", "--rttm", rttm, "--jsonl", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    return result, rttm


def test_diarize_writes_the_same_turns_to_rttm_and_jsonl(diarized):
    result, rttm = diarized
    annotations = load_rttm(rttm)
    assert list(annotations) == ["sample"]
    from_rttm = sorted(
        (segment.start, segment.end, speaker)
        for segment, _, speaker in annotations["sample"].itertracks(yield_label=True)
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events and all(event["event"] == "turn" and event["uri"] == "sample" for event in events)
    from_jsonl = sorted((event["start"], event["end"], event["speaker"]) for event in events)
    assert len(from_rttm) == len(from_jsonl)
    for (start, end, speaker), expected in zip(from_rttm, from_jsonl):
        assert (start, end, speaker) == pytest.approx(expected, abs=0.0015)  # RTTM rounds duration
        assert 0 <= start < end <= 30.1


def test_diarize_reports_plain_progress_when_stderr_is_not_a_terminal(diarized):
    result, _ = diarized
    lines = result.stderr.splitlines()
    assert lines[0] == "[PROGRESS] Using device: cpu"
    progress = [line for line in lines if line.startswith("[PROGRESS] ")]
    assert progress[-1].startswith("[PROGRESS] done sample.wav 30.0/30.0 s ")
    assert progress[-1].endswith(" speakers") and "x realtime " in progress[-1]
    others = [line for line in lines if not line.startswith("[PROGRESS] ")]
    assert len(others) == 1 and others[0].startswith("sample.wav: 30.0 s of audio, "), result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["diarize", "{dev}/missing.wav"], "no such file"),
        (["diarize", "{dev}"], "is a directory"),
        (["diarize", "{dev}/sample.wav", "--latency", "9"], "latency must be between"),
        (["diarize", "{dev}/sample.wav", "--device", "tpu"], "unknown device 'tpu'"),
        (["diarize", "{dev}/sample.wav", "--step", "3", "--window", "2"], "must not exceed"),
        (["diarize", "{dev}/sample.wav", "--backend", "nope"], "unknown backend 'nope'"),
        (["diarize", "{dev}/sample.wav", "--rttm", "{tmp}/missing/out.rttm"], "does not exist"),
        (["diarize", "{dev}/sample.wav", "--latency", "soon"], "invalid float value"),
        (["eval", "--ref", "{dev}/sample.rttm", "--hyp", "{tmp}/missing.rttm"], "no such file"),
    ],
    ids=["missing", "dir", "latency", "device", "step", "backend", "rttm-dir", "flag", "eval"],
)
def test_user_errors_exit_2_with_one_line(run_cli, shared_data, tmp_path, args, message):
    result = run_cli(*(arg.format(dev=shared_data / "dev", tmp=tmp_path) for arg in args))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("streamdiar: error: ") and message in lines[0]


def test_a_bad_last_file_fails_before_any_work(run_cli, shared_data, tmp_path):
    dev = shared_data / "dev"
    rttm = tmp_path / "out.rttm"
    result = run_cli("diarize", dev / "sample.wav", dev / "dev00.wav", dev, "--rttm", rttm)
    assert result.returncode == 2
    assert result.stderr == f"streamdiar: error: {dev} is a directory, not an audio file\n"
    assert result.stdout == ""
    assert not rttm.exists()


def test_use_gpu_asks_for_the_best_accelerator(run_cli, shared_data, tmp_path):
    audio, rate = sf.read(shared_data / "dev" / "sample.wav", dtype="float32")
    clip = tmp_path / "clip.wav"
    sf.write(clip, audio[6 * rate : 10 * rate], rate)
    result = run_cli("diarize", clip, "--use-gpu", "--jsonl", "--progress", "plain")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        assert lines[0] in ("[PROGRESS] Using device: cuda", "[PROGRESS] Using device: mps")
    else:
        assert lines[:2] == [
            "streamdiar: warning: no GPU (CUDA or MPS) is available; using CPU",
            "[PROGRESS] Using device: cpu",
        ]
    both = run_cli("diarize", clip, "--use-gpu", "--device", "cpu")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
