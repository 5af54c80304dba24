"""Acceptance test: streamed DER on the dev set at the default latency, per backend, averaged
over several starts of each stream; and how far the default's file windows move the speech
found from the live windows'."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.detection import DetectionErrorRate

from streamdiar.evaluation import diarization_error_rate, format_report, load_rttm

# Seconds of silence before each file. One start is a lottery: moving it by a tenth of a
# second changes which windows the clustering sees, and so does float rounding, which differs
# between CPUs and runtimes (one start moved the default's DER between 25 and 35 %, README
# "Accuracy on the development recordings"); their average moves far less.
STARTS = (0.0, 0.2, 0.4, 0.6, 0.8)
FILES = ("sample", "dev00", "dev01")

# (backend flags, bound on the DER averaged over the starts, on sample.wav's): the default
# at the bounds it must meet, in file mode (10 s windows every 10/3 s, 16 share a CAM++ pass)
# and one window per batch as live audio is diarized (8 s every 0.5 s); the embedded backend
# at its own. Averages measured on a CPU without bfloat16 units: file mode 26.11 % (sample.wav
# 11.26 %) with CAM++'s trunk in int8, 26.86 % (11.26 %) in float32; one window per batch
# 32.78 % (17.09 %); embedded 29.52 % (32.95 %). On a CPU with them, before the file windows'
# step of 10/3 s: file mode 31.84 % (12.15 %) with windows every 1 s; one window per batch,
# CAM++'s body in bfloat16, 33.50 % (18.32 %). Since, on such a CPU: file mode 27.67 %
# (11.26 %); one window per batch, all its models in bfloat16, 32.37 % (16.25 %).
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


@dataclass
class DevStarts:
    """Every start of every dev file, written as audio, with its shifted reference and UEM."""

    paths: list[Path]
    reference: dict[str, Annotation]
    uem: dict[str, Timeline]


@pytest.fixture(scope="module")
def dev_starts(shared_data, tmp_path_factory) -> DevStarts:
    dev = shared_data / "dev"
    folder = tmp_path_factory.mktemp("dev_starts")
    original = {**load_rttm(dev / "sample.rttm"), **load_rttm(dev / "debug.development.rttm")}
    starts = DevStarts([], {}, {})
    for number, start in enumerate(STARTS):
        for name in FILES:
            audio, rate = sf.read(dev / f"{name}.wav", dtype="float32")
            silence = np.zeros(round(start * rate), dtype=np.float32)
            uri = f"{name}_{number}"
            starts.paths.append(folder / f"{uri}.wav")
            sf.write(starts.paths[-1], np.concatenate([silence, audio]), rate, subtype="FLOAT")
            starts.reference[uri] = shifted(original[name], uri, start)
            starts.uem[uri] = Timeline([Segment(start, start + len(audio) / rate)], uri=uri)
    return starts


@pytest.fixture(scope="module")
def diarized(run_cli, dev_starts, tmp_path_factory) -> Callable[[tuple[str, ...]], dict]:
    """The turns (uri -> Annotation) of all the dev starts diarized in one `diarize` call with
    the given flags; each set of flags runs once per module."""
    runs: dict[tuple[str, ...], dict[str, Annotation]] = {}

    def turns(flags: tuple[str, ...]) -> dict[str, Annotation]:
        if flags not in runs:
            hypothesis = tmp_path_factory.mktemp("hypothesis") / "hyp.rttm"
            result = run_cli("diarize", *dev_starts.paths, "--rttm", hypothesis, *flags)
            assert result.returncode == 0, result.stderr
            runs[flags] = load_rttm(hypothesis)
        return runs[flags]

    return turns


@pytest.mark.parametrize(
    ("flags", "der_bound", "sample_bound"), BOUNDS, ids=["default", "default-as-live", "embedded"]
)
def test_dev_set_der_at_default_latency(dev_starts, diarized, flags, der_bound, sample_bound):
    report = diarization_error_rate(dev_starts.reference, diarized(flags), dev_starts.uem)
    table = format_report(report)
    print(f"\n{table}")
    samples = [report.per_uri[f"sample_{number}"] for number in range(len(STARTS))]
    sample_der = sum(s.der * s.total for s in samples) / sum(s.total for s in samples)
    print(f"sample, all starts: {100 * sample_der:.2f} %")

    assert set(report.per_uri) == set(dev_starts.reference)
    assert report.der <= der_bound and sample_der <= sample_bound, f"\n{table}"


def test_file_windows_find_the_speech_live_windows_find(dev_starts, diarized):
    """Files take 10 s windows every 10/3 s, live audio 8 s every 0.5 s (as `--batch-size 1`):
    where the two say someone speaks, whoever it is, may differ by 6 % of the speech at most,
    and against the reference the file windows find it as well as live windows, within a
    point. Measured: 3.99 % between them (2.73 % with file windows every 1 s, 0.15 % with 8 s
    every 0.5 s); against the reference 7.82 % and 7.63 %."""
    files, live = diarized(()), diarized(("--batch-size", "1"))
    between, files_error, live_error = (DetectionErrorRate() for _ in range(3))
    for uri, speech in live.items():
        uem, reference = dev_starts.uem[uri], dev_starts.reference[uri]
        between(speech, files[uri], uem=uem)
        files_error(reference, files[uri], uem=uem)
        live_error(reference, speech, uem=uem)
    print(
        f"\nspeech found by file windows against live windows: {100 * abs(between):.2f} %; "
        f"against the reference: {100 * abs(files_error):.2f} % and {100 * abs(live_error):.2f} %"
    )
    assert set(files) == set(live) == set(dev_starts.reference)
    assert abs(between) <= 0.06
    assert abs(files_error) <= abs(live_error) + 0.01
