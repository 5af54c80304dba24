"""`streamdiar bench` measures each run in its own process and writes the table as Markdown and
JSON; speeds are only reported, never asserted (the machine is shared)."""

import json
import platform
import shutil

import pytest

from streamdiar.core.openvino_runtime import computes_bfloat16
from streamdiar.memory import fix_mmap_threshold

OFFLINE = {"HF_HUB_OFFLINE": "1"}

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is absent")


@needs_espeak
def test_bench_writes_markdown_and_json_rows(run_cli, tmp_path) -> None:
    markdown, report_path = tmp_path / "bench.md", tmp_path / "bench.json"
    result = run_cli(
        "bench", "--durations", "12", "--audio-dir", tmp_path / "audio",
        "--markdown", markdown, "--json", report_path, "--runtime", "auto,onnx,torch",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    # auto's live models compute in bfloat16 where the CPU does so natively; in files, CAM++
    # runs in int8
    live = "OpenVINO bfloat16" if computes_bfloat16() else "ONNX Runtime, CAM++'s body OpenVINO"
    report = json.loads(report_path.read_text())
    assert [
        (row["runtime"], row["models_ran_on"], row["mode"], row["batch_size"])
        for row in report["rows"]
    ] == [
        ("auto", "OpenVINO, CAM++ OpenVINO int8", "file", 16),
        ("auto", live, "streaming", 1),
        ("onnx", "ONNX Runtime", "file", 16),
        ("onnx", "ONNX Runtime", "streaming", 1),
        ("torch", "torch", "file", 16),
        ("torch", "torch", "streaming", 1),
    ]
    for row in report["rows"]:
        assert row["backend"] == "campplus" and row["device"] == "cpu"
        assert row["audio_seconds"] == pytest.approx(12)
        assert row["rtf"] == pytest.approx(row["seconds"] / row["audio_seconds"])
        assert 100 < row["peak_rss_mb"] < 8000  # MiB: torch and the models, not bytes or KiB
        stages = ("decode", "segmentation", "embedding", "clustering")
        assert all(row[f"{stage}_seconds"] > 0 for stage in stages)
        assert 0 < row["batch_ms_median"] < 1000 * row["seconds"]
        assert 0 <= row["der"] <= 1 and 1 <= row["speakers"]
    table = markdown.read_text()
    assert table == result.stdout
    assert "| campplus | cpu | auto (OpenVINO, CAM++ OpenVINO int8) | file | 12 s |" in table
    assert "| campplus | cpu | onnx (ONNX Runtime) | file | 12 s |" in table
    assert "| campplus | cpu | torch | streaming | 12 s |" in table
    # the same models give the same turns on ONNX Runtime and torch, in each mode's windows
    for mode in ("file", "streaming"):
        float32 = [
            row for row in report["rows"]
            if row["models_ran_on"] in ("ONNX Runtime", "torch") and row["mode"] == mode
        ]  # fmt: skip
        assert len(float32) == 2 and float32[0]["der"] == float32[1]["der"], float32
        assert float32[0]["speakers"] == float32[1]["speakers"]
    # the audio is generated once and found again by a later run
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == [
        "conversation-4spk-12s.rttm",
        "conversation-4spk-12s.wav",
    ]


@needs_espeak
def test_bench_times_pyannote_audio_beside_the_pyannote_backend(run_cli, tmp_path) -> None:
    result = run_cli(
        "bench", "--backend", "pyannote", "--random-weights", "--durations", "6",
        "--modes", "file", "--batch-size", "4", "--audio-dir", tmp_path,
        "--json", tmp_path / "bench.json", extra_env=OFFLINE,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [row["mode"] for row in rows] == ["file", "pyannote.audio"]
    assert all(row["rtf"] > 0 and row["der"] is None for row in rows)
    assert "| pyannote | cpu | torch | pyannote.audio | 6 s |" in result.stdout


@needs_espeak
def test_bench_serve_counts_the_streams_a_server_keeps_up_with(run_cli, tmp_path) -> None:
    result = run_cli(
        "bench", "--serve", "--streams", "2", "--durations", "10", "--audio-dir", tmp_path,
        "--json", tmp_path / "bench.json",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    (row,) = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert (row["backend"], row["device"], row["runtime"], row["streams"]) == (
        "campplus", "cpu", "auto", 2
    )  # fmt: skip
    assert row["audio_seconds"] == pytest.approx(10)
    assert row["keeps_up"] == (row["dropped_seconds"] == 0)
    assert 0 < row["server_cpu_seconds"] and 0 <= row["der_mean"] <= 1
    assert "| campplus | cpu | auto | 2 | 10 s |" in result.stdout
    assert "Keeps up with " in result.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--durations", "0"], "durations must be positive"),
        (["--durations", "soon"], "expected comma-separated seconds"),
        (["--backend", "whisper"], "unknown backend 'whisper'"),
        (["--modes", "offline"], "unknown mode 'offline'"),
        (["--runtime", "tensorrt"], "unknown runtime 'tensorrt'"),
        (["--batch-size", "0"], "--batch-size and --speakers must be at least 1"),
        (["--serve", "--streams", "0"], "--streams must be at least 1"),
        (["--streams", "two"], "expected comma-separated counts"),
    ],
)
def test_bench_refuses_bad_flags_in_one_line(run_cli, flags, message) -> None:
    result = run_cli("bench", *flags)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_mmap_threshold_is_fixed_on_glibc() -> None:
    assert fix_mmap_threshold()


def test_machine_label_names_the_gpu_only_for_cuda_rows(monkeypatch) -> None:
    import torch

    from streamdiar.cli.bench import machine_label

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *device: "NVIDIA H200")
    assert machine_label(["cpu", "cuda"]).endswith(", NVIDIA H200")
    assert "NVIDIA" not in machine_label(["cpu"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "NVIDIA" not in machine_label(["cuda"])
