"""Acceptance test: DER on the dev set at the default latency, per backend.

One run's DER is a lottery on 90 s of dev audio: starting the same files a few hundredths of a
second later moves the default's DER by up to 5 points, as tiny differences in the vectors
flip the clustering's decisions. So the default is bounded on its mean over 15 starts (0 to
0.9 s of silence before each file), which moves far less than any one start does; the
embedded backend on the files' own starts.
"""

import numpy as np
import pytest
import soundfile as sf
from pyannote.core import Annotation, Segment, Timeline

from streamdiar.evaluation import diarization_error_rate, format_report, load_rttm, load_uem

FILES = ("sample", "dev00", "dev01")
# seconds of silence before each file
STARTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9)

# (flags, bound on the mean DER over STARTS, on sample.wav's mean DER): the default in file
# mode (16 windows share a CAM++ pass) and one window per batch as live audio is diarized.
# The overall bounds are the means before OpenVINO and the live front (ONNX Runtime, one pass
# per window live: file 30.98 %, live 34.47 %) plus half a point; sample.wav's guard against
# a collapse of the phone call, two points above its means then (16.22 % and 18.81 %).
# Measured now: file 30.73 % (sample.wav 16.22 %), live 32.78 % (19.21 %); README "Accuracy
# on the development recordings".
MEAN_BOUNDS = [
    ((), 0.3148, 0.1822),
    (("--batch-size", "1"), 0.3497, 0.2081),
]


@pytest.fixture(scope="module")
def scoring(shared_data):
    """The dev set's reference and scored regions (sample.wav is scored over all of it)."""
    dev = shared_data / "dev"
    reference = {**load_rttm(dev / "sample.rttm"), **load_rttm(dev / "debug.development.rttm")}
    uem = load_uem(dev / "debug.development.uem")
    uem["sample"] = Timeline([Segment(0, sf.info(dev / "sample.wav").duration)], uri="sample")
    return reference, uem


def shifted_back(annotation: Annotation, uri: str, seconds: float) -> Annotation:
    """`annotation` on the timeline of the file without the `seconds` of silence before it."""
    shifted = Annotation(uri=uri)
    for segment, track, label in annotation.itertracks(yield_label=True):
        start, end = max(segment.start - seconds, 0.0), segment.end - seconds
        if end > start:
            shifted[Segment(start, end), track] = label
    return shifted


@pytest.fixture(scope="module")
def started_late(shared_data, tmp_path_factory):
    """Each dev file once per start, as `{name}@{start}.wav` with the silence before it."""
    folder = tmp_path_factory.mktemp("starts")
    for name in FILES:
        audio, rate = sf.read(shared_data / "dev" / f"{name}.wav", dtype="float32")
        for start in STARTS:
            silence = np.zeros((round(start * rate), *audio.shape[1:]), dtype=np.float32)
            sf.write(folder / f"{name}@{start}.wav", np.concatenate([silence, audio]), rate)
    return folder


@pytest.mark.parametrize(
    ("flags", "der_bound", "sample_bound"), MEAN_BOUNDS, ids=["default", "default-as-live"]
)
def test_dev_set_der_averaged_over_starts(
    run_cli, started_late, scoring, tmp_path, flags, der_bound, sample_bound
):
    reference, uem = scoring
    files = [f"{name}@{start}.wav" for start in STARTS for name in FILES]
    hypothesis_path = tmp_path / "hyp.rttm"
    result = run_cli("diarize", *files, "--rttm", hypothesis_path, *flags, cwd=started_late)
    assert result.returncode == 0, result.stderr

    hypothesis = load_rttm(hypothesis_path)
    ders, sample_ders = [], []
    for start in STARTS:
        turns = {
            name: shifted_back(hypothesis.get(f"{name}@{start}", Annotation()), name, start)
            for name in FILES
        }
        report = diarization_error_rate(reference, turns, uem)
        print(f"\nstarted {start} s late:\n{format_report(report)}")
        ders.append(report.der)
        sample_ders.append(report.per_uri["sample"].der)
    summary = (
        f"DER per start {np.round(ders, 4)}, mean {np.mean(ders):.4f}; "
        f"sample mean {np.mean(sample_ders):.4f}"
    )
    print(summary)
    assert np.mean(ders) <= der_bound and np.mean(sample_ders) <= sample_bound, summary


def test_embedded_backend_dev_set_der(run_cli, shared_data, scoring, tmp_path):
    """The embedded backend from the files' own starts (28.3 % and 34.5 % when last tuned)."""
    reference, uem = scoring
    hypothesis = tmp_path / "hyp.rttm"
    files = [f"{name}.wav" for name in FILES]
    result = run_cli(
        "diarize", *files, "--rttm", hypothesis, "--backend", "embedded", cwd=shared_data / "dev"
    )
    assert result.returncode == 0, result.stderr

    report = diarization_error_rate(reference, load_rttm(hypothesis), uem)
    table = format_report(report)
    print(f"\n{table}")
    assert set(report.per_uri) == set(FILES)
    assert report.der <= 0.30 and report.per_uri["sample"].der <= 0.35, f"\n{table}"
