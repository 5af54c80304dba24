"""Acceptance test: streamed DER on the dev set at the default latency, per backend, averaged
over several starts of each stream."""

import numpy as np
import pytest
import soundfile as sf
from pyannote.core import Annotation, Segment, Timeline

from streamdiar.evaluation import diarization_error_rate, format_report, load_rttm

# Seconds of silence before each file. One start is a lottery: moving it by a tenth of a
# second changes which windows the clustering sees, and so does float rounding, which differs
# between CPUs and runtimes (one start moved the default's DER between 25 and 35 %, README
# "Accuracy on the development recordings"); their average moves far less.
STARTS = (0.0, 0.2, 0.4, 0.6, 0.8)
FILES = ("sample", "dev00", "dev01")

# (backend flags, bound on the DER averaged over the starts, on sample.wav's): the default
# at the bounds it must meet, in file mode (16 windows share a CAM++ pass) and one window per
# batch as live audio is diarized; the embedded backend at its own. Averages measured on a
# CPU with bfloat16 units: file mode 31.04 % (sample.wav 18.22 %); one window per batch,
# CAM++'s body in bfloat16 33.50 % (18.32 %), in float32 as on other CPUs 32.33 % (17.09 %);
# embedded 29.52 % (32.95 %).
BOUNDS = [
    ((), 0.33, 0.22),
    (("--batch-size", "1"), 0.36, 0.22),
    (("--backend", "embedded"), 0.32, 0.37),
]


def shifted(annotation: Annotation, uri: str, offset: float) -> Annotation:
    """`annotation` `offset` s later, as file `uri`."""
    moved = Annotation(uri=uri)
    for segment, track, label in annotation.itertracks(yield_label=True):
        moved[Segment(segment.start + offset, segment.end + offset), track] = label
    return moved


@pytest.mark.parametrize(
    ("flags", "der_bound", "sample_bound"), BOUNDS, ids=["default", "default-as-live", "embedded"]
)
def test_dev_set_der_at_default_latency(run_cli, shared_data, tmp_path, flags, der_bound, sample_bound):
    dev = shared_data / "dev"
    original = {**load_rttm(dev / "sample.rttm"), **load_rttm(dev / "debug.development.rttm")}
    reference, uem, paths = {}, {}, []
    for number, start in enumerate(STARTS):
        for name in FILES:
            audio, rate = sf.read(dev / f"{name}.wav", dtype="float32")
            silence = np.zeros(round(start * rate), dtype=np.float32)
            uri = f"{name}_{number}"
            paths.append(tmp_path / f"{uri}.wav")
            sf.write(paths[-1], np.concatenate([silence, audio]), rate, subtype="FLOAT")
            reference[uri] = shifted(original[name], uri, start)
            uem[uri] = Timeline([Segment(start, start + len(audio) / rate)], uri=uri)
    hypothesis = tmp_path / "hyp.rttm"
    result = run_cli("diarize", *paths, "--rttm", hypothesis, *flags)
    assert result.returncode == 0, result.stderr

    report = diarization_error_rate(reference, load_rttm(hypothesis), uem)
    table = format_report(report)
    print(f"\n{table}")
    samples = [report.per_uri[f"sample_{number}"] for number in range(len(STARTS))]
    sample_der = sum(s.der * s.total for s in samples) / sum(s.total for s in samples)
    print(f"sample, all starts: {100 * sample_der:.2f} %")

    assert set(report.per_uri) == set(reference)
    assert report.der <= der_bound and sample_der <= sample_bound, f"\n{table}"
