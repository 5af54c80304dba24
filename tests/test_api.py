"""The Python API, through the names of the package root only: files, audio pushed in blocks,
async streams, sessions in threads, the helpers around turns, and the errors."""

import asyncio
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdiar import (
    AudioError,
    Diarizer,
    LabelledSegment,
    SessionClosedError,
    SettingsError,
    StreamdiarError,
    TranscriptError,
    Turn,
    label_transcript,
    to_annotation,
    to_rttm,
)

CLIP = (6.0, 18.0)  # s of sample.wav: both voices, short enough to diarize in seconds
FASTER_WHISPER = Path(__file__).parent / "fixtures" / "transcripts" / "faster_whisper.json"


def excerpt(source: Path, seconds: tuple[float, float], target: Path) -> Path:
    """`seconds` of `source` written to `target` in the same sample format."""
    samples, rate = sf.read(source, dtype="float32")
    part = samples[round(seconds[0] * rate) : round(seconds[1] * rate)]
    sf.write(target, part, rate, subtype=sf.info(source).subtype)
    return target


@pytest.fixture(scope="module")
def clip(shared_data, tmp_path_factory) -> Path:
    return excerpt(
        shared_data / "dev" / "sample.wav", CLIP, tmp_path_factory.mktemp("clip") / "clip.wav"
    )


@pytest.fixture(scope="module")
def clip_turns(default_diarizer, clip) -> list[Turn]:
    turns = default_diarizer.diarize(clip)
    assert len({turn.speaker for turn in turns}) >= 2, turns
    return turns


@pytest.fixture(scope="module")
def clip_live_turns(live_diarizer, clip) -> list[Turn]:
    turns = live_diarizer.diarize(clip)
    assert len({turn.speaker for turn in turns}) >= 2, turns
    return turns


def pushed(session, samples: np.ndarray, cuts: list[int]) -> list[Turn]:
    """The turns of `samples` pushed into `session` in blocks cut at `cuts`, then closed."""
    bounds = [0, *sorted(cuts), len(samples)]
    turns = []
    for start, end in zip(bounds, bounds[1:]):
        turns += session.push(samples[start:end])
    return turns + session.close()


def test_diarize_gives_the_rttm_of_the_command_line(
    default_diarizer, run_cli, shared_data, tmp_path
):
    sample = shared_data / "dev" / "sample.wav"
    rttm = tmp_path / "cli.rttm"
    result = run_cli("diarize", sample, "--rttm", rttm, "--progress", "none")
    assert result.returncode == 0, result.stderr
    turns = default_diarizer.diarize(sample)
    assert len({turn.speaker for turn in turns}) == 2, turns
    assert to_rttm(turns, "sample") == rttm.read_text()


@pytest.mark.parametrize(
    ("dtype", "layout"),
    [("int16", "mono"), ("float32", "column"), ("int16", "stereo"), ("float32", "interleaved")],
)
@settings(max_examples=2)  # per layout: each example runs the model over the clip
@given(cuts=st.lists(st.integers(0, round((CLIP[1] - CLIP[0]) * 16_000)), max_size=40))
def test_blocks_of_any_sizes_pushed_give_the_turns_of_the_file_as_live(
    default_diarizer, clip, clip_live_turns, dtype, layout, cuts
):
    samples, rate = sf.read(clip, dtype=dtype)
    channels = 2 if layout in ("stereo", "interleaved") else 1
    if layout == "column":
        samples = samples[:, None]  # (frames, 1)
    elif layout == "stereo":
        samples = np.stack([samples, samples], axis=1)  # (frames, 2): their mean is the mono
    elif layout == "interleaved":
        samples = np.repeat(samples, 2)  # (frames * 2,): left, right, left...
        cuts = [2 * cut for cut in cuts]  # whole frames
    assert pushed(default_diarizer.session(rate, channels), samples, cuts) == clip_live_turns


def test_a_session_resamples_any_rate_as_files_are(
    default_diarizer, live_diarizer, clip, tmp_path
):
    samples, rate = sf.read(clip, dtype="float32")
    stereo = np.stack([samples, 0.5 * samples], axis=1)
    recording = tmp_path / "stereo.wav"
    sf.write(recording, stereo, 44_100, subtype="FLOAT")  # the same samples, read as 44.1 kHz
    expected = live_diarizer.diarize(recording)
    assert expected
    cuts = list(range(441, len(stereo), 4410))  # 10 ms, then blocks of 100 ms
    assert pushed(default_diarizer.session(44_100, channels=2), stereo, cuts) == expected


def test_async_streams_of_a_file_or_of_blocks_give_its_turns(
    default_diarizer, clip, clip_turns, clip_live_turns
):
    samples, rate = sf.read(clip, dtype="float32")

    async def blocks():
        for start in range(0, len(samples), 3200):
            yield samples[start : start + 3200]
            await asyncio.sleep(0)

    async def collect(source, **format):
        return [turn async for turn in default_diarizer.stream(source, **format)]

    assert asyncio.run(collect(clip)) == clip_turns
    assert asyncio.run(collect(blocks(), sample_rate=rate)) == clip_live_turns


def test_diarize_works_inside_a_running_event_loop(default_diarizer, clip, clip_turns):
    async def notebook_cell():
        return default_diarizer.diarize(clip)

    assert asyncio.run(notebook_cell()) == clip_turns


def test_sessions_in_two_threads_keep_their_own_speakers_on_models_loaded_once(
    shared_data, tmp_path, monkeypatch
):
    loads = 0
    real_load = torch.load

    def counted_load(*args, **kwargs):
        nonlocal loads
        loads += 1
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counted_load)
    diarizer = Diarizer(batch_size=1)  # files diarized as pushed audio is
    loaded = loads
    assert loaded >= 2, "both models are read with torch.load"
    dev = shared_data / "dev"
    files = [
        excerpt(dev / "sample.wav", CLIP, tmp_path / "a.wav"),
        excerpt(dev / "dev01.wav", (3.0, 17.0), tmp_path / "b.wav"),
    ]
    alone = [diarizer.diarize(path) for path in files]
    assert all(len({turn.speaker for turn in turns}) == 2 for turns in alone), alone

    together: list[list[Turn]] = [[], []]
    running: list[tuple[float, float]] = [(0.0, 0.0), (0.0, 0.0)]
    start = threading.Barrier(2)

    def push_file(index: int) -> None:
        samples, rate = sf.read(files[index], dtype="float32")
        session = diarizer.session(rate)
        start.wait()
        began = time.monotonic()
        together[index] = pushed(session, samples, list(range(rate // 2, len(samples), rate // 2)))
        running[index] = (began, time.monotonic())

    threads = [threading.Thread(target=push_file, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone
    (first_start, first_end), (second_start, second_end) = running
    assert first_start < second_end and second_start < first_end, "the sessions ran at once"
    assert loads == loaded, "no model was loaded again"


@pytest.mark.parametrize(
    ("call", "cli_args"),
    [
        (lambda dev, diarizer: diarizer.diarize(dev / "missing.wav"), ["{dev}/missing.wav"]),
        (lambda dev, diarizer: diarizer.diarize(dev), ["{dev}"]),
        (lambda dev, diarizer: diarizer.diarize(dev / "sample.rttm"), ["{dev}/sample.rttm"]),
        (lambda dev, diarizer: Diarizer(backend="nope"), ["{dev}/sample.wav", "--backend", "nope"]),
        (lambda dev, diarizer: Diarizer(device="tpu"), ["{dev}/sample.wav", "--device", "tpu"]),
        (lambda dev, diarizer: Diarizer(latency=9), ["{dev}/sample.wav", "--latency", "9"]),
        (
            lambda dev, diarizer: Diarizer(window=2.0, step=3.0),
            ["{dev}/sample.wav", "--window", "2", "--step", "3"],
        ),
    ],
    ids=["missing", "directory", "undecodable", "backend", "device", "latency", "step"],
)
def test_errors_carry_the_line_the_command_prints(
    default_diarizer, run_cli, shared_data, call, cli_args
):
    dev = shared_data / "dev"
    with pytest.raises(StreamdiarError) as raised:
        call(dev, default_diarizer)
    assert isinstance(raised.value, (AudioError, SettingsError))
    result = run_cli("diarize", *(arg.format(dev=dev) for arg in cli_args))
    assert result.returncode == 2
    assert result.stderr == f"streamdiar: error: {raised.value}\n"


def test_pushed_samples_of_another_type_or_shape_are_refused(default_diarizer):
    session = default_diarizer.session(16_000, channels=2)
    for samples, message in [
        (np.zeros(640, np.int32), "samples must be int16 or float32, got int32"),
        (np.zeros((320, 3), np.float32), r"shape \(320, 3\) does not hold 2 channels"),
        (np.zeros(641, np.float32), r"shape \(641,\) does not hold 2 channels"),
        (np.zeros((2, 320, 2), np.int16), r"shape \(2, 320, 2\) does not hold 2 channels"),
    ]:
        with pytest.raises(AudioError, match=message):
            session.push(samples)
    assert session.push(np.zeros((320, 2), np.int16)) == []  # a refused block changes nothing
    assert session.close() == []  # 20 ms of silence: no speech
    assert session.close() == []
    with pytest.raises(SessionClosedError):
        session.push(np.zeros((320, 2), np.int16))


@pytest.mark.parametrize(
    "stream_format",
    [{"sample_rate": 0}, {"sample_rate": 16_000.5}, {"sample_rate": True}, {"channels": 0}],
)
def test_sample_rates_and_channel_counts_that_no_audio_has_are_refused(
    default_diarizer, stream_format
):
    with pytest.raises(SettingsError, match="must be a whole number"):
        default_diarizer.session(**stream_format)


def test_a_file_has_its_own_rate_and_a_source_must_be_a_path_or_async(default_diarizer, clip):
    with pytest.raises(SettingsError, match="a file has its own"):
        default_diarizer.stream(clip, sample_rate=8000)
    with pytest.raises(TypeError, match="async iterable"):
        default_diarizer.stream(np.zeros(16_000, np.float32))


def test_turns_become_rttm_and_pyannote_annotations():
    turns = [
        Turn(0.5, 2.0, "SPEAKER_00"), Turn(1.0, 2.0, "SPEAKER_01"), Turn(1.0, 2.0, "SPEAKER_00"),
    ]  # fmt: skip
    assert to_rttm(turns[:2], "a call") == (
        "SPEAKER a_call 1 0.500 1.500 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
        "SPEAKER a_call 1 1.000 1.000 <NA> <NA> SPEAKER_01 <NA> <NA>\n"
    )
    annotation = to_annotation(turns, "call")
    assert annotation.uri == "call"
    assert sorted((s.start, s.end, label) for s, _, label in annotation.itertracks(True)) == sorted(
        (turn.start, turn.end, turn.speaker) for turn in turns
    )


def test_label_transcript_takes_whisper_output_as_a_program_holds_it(shared_data):
    reference = [
        Turn(float(f[3]), float(f[3]) + float(f[4]), f[7])
        for f in map(str.split, (shared_data / "dev" / "sample.rttm").read_text().splitlines())
    ]
    from_file = label_transcript(reference, FASTER_WHISPER)
    assert all(isinstance(segment, LabelledSegment) for segment in from_file)
    assert [segment.speaker for segment in from_file[:4]] == [
        "speaker90", "speaker91", "speaker90", "speaker90",
    ]  # fmt: skip
    decoded = json.loads(FASTER_WHISPER.read_text())
    # what faster-whisper's WhisperModel.transcribe yields: objects with these attributes
    objects = [
        SimpleNamespace(
            start=s["start"], end=s["end"], text=s["text"],
            words=[SimpleNamespace(**word) for word in s["words"]],
        )
        for s in decoded
    ]  # fmt: skip
    assert label_transcript(reference, decoded) == from_file
    assert label_transcript(reference, {"segments": decoded, "language": "en"}) == from_file
    assert label_transcript(reference, iter(objects)) == from_file
    with pytest.raises(TranscriptError, match=r"whisper output\[0\]: expected a segment"):
        label_transcript(reference, [42])
