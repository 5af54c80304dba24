"""`streamdiar bench` runs pyannote.audio's pipeline and streamdiar's file mode on the same
audio and reports both; speeds are only reported, never asserted (the machine is shared)."""

import json

OFFLINE = {"HF_HUB_OFFLINE": "1"}


def test_bench_reports_both_pipelines_as_json(run_cli) -> None:
    result = run_cli(
        "bench", "--backend", "pyannote", "--random-weights", "--device", "cpu",
        "--seconds", "3", "--warm-up", "0", "--live-steps", "1", "--json", extra_env=OFFLINE,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["audio_seconds"] == 3 and report["models"] == "random weights"
    assert report["device"] == "cpu" and report["live_steps"] == 1
    for name in ("pyannote_seconds", "streamdiar_seconds", "live_step_median", "live_step_p95"):
        assert report[name] > 0
    assert report["pyannote_rtf"] == report["pyannote_seconds"] / 3
    assert report["speedup"] == report["pyannote_seconds"] / report["streamdiar_seconds"]


def test_bench_refuses_nonpositive_seconds(run_cli) -> None:
    result = run_cli("bench", "--random-weights", "--seconds", "0")
    assert result.returncode == 2
    assert "--seconds must be positive" in result.stderr
