"""`streamdiar live --transcribe`: a transcriber beside the live diarizer on a tee of the same
audio, its text labelled with speakers as soon as the diarization is final over it."""

import argparse
import asyncio
import json
import sys
import time
import types
from collections.abc import AsyncIterable, AsyncIterator, Callable
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console

from streamdiar.cli.live import add_live_command, run_live, summary
from streamdiar.session import build_live_diarizer
from streamdiar.cli.live_view import LiveView
from streamdiar.core.types import SAMPLE_RATE, Turn
from streamdiar.stream.microphone import Capture, SimulatedMicrophone
from streamdiar.stream.tee import Tee
from streamdiar.transcript.align import align
from streamdiar.transcript.live import LiveTranscription
from streamdiar.transcript.types import LabelledSegment, Segment, Word
from streamdiar.transcript.whisper import (
    INSTALL_HINT,
    WhisperError,
    WhisperTranscriber,
    check_faster_whisper,
    load_whisper,
)

pytestmark = pytest.mark.realtime  # capture runs at real time and a stuck side is timed


def _utterances(stm: Path) -> list[tuple[Segment, str]]:
    """sample.stm's utterances as transcript segments (words spread evenly), with the name of
    their speaker."""
    utterances = []
    for line in stm.read_text().splitlines():
        _, _, name, start, end, text = line.split(maxsplit=5)
        begin, finish, said = float(start), float(end), text.split()
        step = (finish - begin) / len(said)
        words = tuple(
            Word(begin + i * step, begin + (i + 1) * step, word) for i, word in enumerate(said)
        )
        utterances.append((Segment(begin, finish, text, words), name))
    return utterances


class StmTranscriber:
    """Stands in for Whisper: says each utterance once the audio it was given has passed the
    utterance's end by `delay` s. `hold`, if given, keeps it from taking any audio until it
    returns True (a transcriber stuck on a long chunk)."""

    def __init__(
        self, segments: list[Segment], delay: float = 0.5, hold: Callable[[], bool] | None = None
    ) -> None:
        self.segments = segments
        self.delay = delay
        self.hold = hold
        self.heard = 0.0  # s of audio received
        self.silence = 0.0  # s of it that were exact silence

    async def transcribe(self, blocks: AsyncIterable[np.ndarray]) -> AsyncIterator[Segment]:
        waiting = list(self.segments)
        async for block in blocks:
            while self.hold is not None and not self.hold():
                await asyncio.sleep(0.05)
            self.heard += len(block) / SAMPLE_RATE
            self.silence += 0.0 if block.any() else len(block) / SAMPLE_RATE
            while waiting and waiting[0].end + self.delay <= self.heard:
                yield waiting.pop(0)
        for segment in waiting:
            yield segment


def test_labelled_text_comes_out_once_the_diarization_is_final_over_it(shared_data, backend):
    utterances = _utterances(shared_data / "dev" / "sample.stm")
    transcriber = StmTranscriber([segment for segment, _ in utterances])
    source = SimulatedMicrophone(shared_data / "dev" / "sample.wav", speed=8.0)
    capture = Capture(source, max_queue_seconds=30.0)  # nothing dropped, however busy the CPU
    diarizer = build_live_diarizer(backend, 2.0)
    released: list[tuple[LabelledSegment, float, float]] = []  # with commit point, audio heard

    def on_segment(segment: LabelledSegment) -> None:
        released.append((segment, diarizer.stitcher.committed_until, transcriber.heard))

    transcription = LiveTranscription(transcriber, on_segment)
    turns: list[Turn] = []
    talk = asyncio.run(run_live(capture, diarizer, turns.append, None, transcription))

    labelled = [segment for segment, _, _ in released]
    print(f"\n{summary(capture, talk, transcription)}")
    for segment, committed, heard in released:
        print(f"{segment.start:6.2f} {segment.end:6.2f} {segment.speaker} committed {committed:6.2f}"
              f" heard {heard:6.2f}  {segment.text}")  # fmt: skip
    assert capture.stats.dropped_seconds == 0 and transcription.dropped_seconds == 0
    assert transcription.released == len(labelled) >= len(utterances)
    # every word once, in order, each piece after the diarization was final over its span
    said = [w.word.text for segment in labelled for w in segment.words]
    assert said == [w.text for u, _ in utterances for w in u.words]
    assert all(committed >= segment.end - 1e-6 for segment, committed, _ in released)
    assert [s.start for s in labelled] == sorted(s.start for s in labelled)
    # labelled live as the whole diarization labels them afterwards: nothing released early
    assert labelled == align(turns, transcriber.segments)
    # (how right those speakers are is the diarizer's business: see test_live.py's DER)
    speakers = {s.speaker for s in labelled}
    assert speakers <= set(talk) and len(speakers) >= 2
    assert transcriber.heard == pytest.approx(30.0)


def test_a_stuck_transcriber_holds_back_neither_capture_nor_the_diarizer(shared_data, backend):
    utterances = _utterances(shared_data / "dev" / "sample.stm")
    diarizer = build_live_diarizer(backend, 2.0)
    # stuck until the diarizer has had the whole file: a tee that waited for it would hang
    transcriber = StmTranscriber(
        [segment for segment, _ in utterances], hold=lambda: diarizer.stats.audio_seconds >= 29.9
    )
    source = SimulatedMicrophone(shared_data / "dev" / "sample.wav", speed=4.0)
    capture = Capture(source)  # drops audio when the diarizer falls 5 s behind
    labelled: list[LabelledSegment] = []
    transcription = LiveTranscription(transcriber, labelled.append, max_behind_seconds=2.0)
    started = time.monotonic()
    talk = asyncio.run(
        asyncio.wait_for(run_live(capture, diarizer, lambda turn: None, None, transcription), 120)
    )

    line = summary(capture, talk, transcription)
    print(f"\n{line}\nin {time.monotonic() - started:.1f} s")
    assert capture.stats.dropped_seconds == 0
    assert diarizer.stats.audio_seconds == pytest.approx(30.0)
    # the transcriber missed all but its last 2 s, stood in for by silence of the same length
    assert 27.0 <= transcription.dropped_seconds <= 28.1
    assert transcriber.silence == pytest.approx(transcription.dropped_seconds)
    assert transcriber.heard == pytest.approx(30.0)  # its clock stayed the diarizer's
    assert f"{transcription.dropped_seconds:.1f} s not transcribed" in line
    assert len(labelled) >= len(utterances)  # what it said late still comes out, labelled


def test_the_tee_drops_the_oldest_audio_of_a_slow_side_and_keeps_its_clock():
    blocks = [np.full(1600, i + 1, np.float32) for i in range(10)]  # 0.1 s each

    async def source() -> AsyncIterator[np.ndarray]:
        for block in blocks:
            yield block

    async def run() -> tuple[list[np.ndarray], list[np.ndarray]]:
        tee = Tee(source(), max_side_seconds=0.3)
        main = [block async for block in tee.main()]  # the side takes nothing meanwhile
        return main, [block async for block in tee.side()]

    main, side = asyncio.run(run())
    assert len(main) == 10 and all(m is b for m, b in zip(main, blocks))
    assert [len(b) for b in side] == [11200, 1600, 1600, 1600]
    assert not side[0].any() and [b[0] for b in side[1:]] == [8, 9, 10]


def _live_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_live_command(parser.add_subparsers(), argparse.ArgumentParser(add_help=False))
    return parser.parse_args(["live", *argv])


def test_live_transcribe_writes_labelled_lines_and_a_transcript_file(
    shared_data, tmp_path, capsys
):
    utterances = _utterances(shared_data / "dev" / "sample.stm")
    prepared: list[tuple[str, str | None, str]] = []

    def prepare(model: str, language: str | None) -> Callable[[str], StmTranscriber]:
        def load(device: str) -> StmTranscriber:
            prepared.append((model, language, device))
            return StmTranscriber([segment for segment, _ in utterances])

        return load

    vtt = tmp_path / "out.vtt"
    args = _live_args(
        "--simulate", str(shared_data / "dev" / "sample.wav"), "--speed", "3", "--jsonl",
        "--transcribe", "tiny", "--language", "en", "--transcript", str(vtt), "--device", "cpu",
    )  # fmt: skip
    assert args.run(args, prepare) == 0

    assert prepared == [("tiny", "en", "cpu")]
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    segments = [e for e in events if e["event"] == "segment"]
    assert {e["event"] for e in events} == {"turn", "segment"}
    assert len(segments) >= len(utterances)
    assert all(s["uri"] == "sample" and s["speaker"].startswith("SPEAKER_") for s in segments)
    assert " ".join(s["text"] for s in segments).split() == " ".join(
        u.text for u, _ in utterances
    ).split()
    assert "streamdiar: transcribing with tiny" in err
    assert f"{len(segments)} transcript segments, 0.0 s not transcribed" in err.splitlines()[-1]
    cues = vtt.read_text().split("\n\n")
    assert cues[0] == "WEBVTT" and len(cues) - 1 == len(segments)
    assert segments[0]["speaker"] in cues[1] and segments[0]["text"] in cues[1]


def test_live_view_shows_labelled_text(backend, shared_data):
    segment = LabelledSegment(6.68, 7.16, "Hello?", "SPEAKER_00")
    for terminal in (False, True):
        screen = StringIO()
        capture = Capture(SimulatedMicrophone(shared_data / "dev" / "sample.wav"))
        transcription = LiveTranscription(StmTranscriber([]), lambda segment: None)
        view = LiveView(
            capture, build_live_diarizer(backend, 2.0),
            Console(file=screen, force_terminal=terminal, width=100),
            transcription=transcription,
        )  # fmt: skip
        view.write_segment(segment)
        if terminal:
            Console(file=screen, width=200).print(view.render())
            assert "SPEAKER_00: Hello?" in screen.getvalue()
            assert "0 transcript segments, 0.0 s not transcribed" in screen.getvalue()
        else:
            assert screen.getvalue() == "   6.68 →   7.16  SPEAKER_00: Hello?\n"


class BurstModel:
    """Stands in for faster_whisper.WhisperModel: "hears" a word wherever the audio is loud,
    with times relative to the audio it is given (a word cut by the end ends there)."""

    def __init__(self) -> None:
        self.heard: list[int] = []  # samples of each call
        self.silent = 0  # samples of exact silence it was given
        self.options: dict[str, Any] = {}

    def transcribe(self, audio: np.ndarray, **options: Any) -> tuple[Any, None]:
        self.heard.append(len(audio))
        self.silent += int((audio == 0).sum())
        self.options = options
        loud = np.abs(audio) > 0.1
        edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(int), [0]])))
        segments = []
        for first, last in zip(edges[::2], edges[1::2]):
            start, end = first / SAMPLE_RATE, last / SAMPLE_RATE
            word = types.SimpleNamespace(start=start, end=end, word=" burst")
            segments.append(types.SimpleNamespace(start=start, end=end, text=" burst", words=[word]))
        return iter(segments), None


def test_the_whisper_adapter_gives_each_word_once_in_stream_time():
    bursts = [(1.0, 1.4), (3.0, 3.5), (5.6, 6.4), (9.0, 9.5), (13.0, 13.3)]
    gap = (10.0, 12.0)  # exact silence: what the tee gives for audio dropped
    audio = np.full(15 * SAMPLE_RATE, 0.001, np.float32)
    for start, end in bursts:
        audio[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)] = 0.5
    audio[round(gap[0] * SAMPLE_RATE) : round(gap[1] * SAMPLE_RATE)] = 0.0
    model = BurstModel()

    async def blocks() -> AsyncIterator[np.ndarray]:
        for block in np.split(audio, 150):  # 0.1 s each
            yield block

    async def transcribe() -> list[Segment]:
        transcriber = WhisperTranscriber(model, "en", chunk_seconds=2.0)
        return [segment async for segment in transcriber.transcribe(blocks())]

    segments = asyncio.run(transcribe())
    times = [t for burst in bursts for t in burst]
    assert [t for s in segments for t in (s.start, s.end)] == pytest.approx(times)
    assert all(s.text == "burst" and [w.text for w in s.words] == ["burst"] for s in segments)
    assert [t for s in segments for w in s.words for t in (w.start, w.end)] == pytest.approx(times)
    assert model.options["word_timestamps"] is True and model.options["language"] == "en"
    assert len(model.heard) > 3 and max(model.heard) < 8 * SAMPLE_RATE
    assert model.silent == 0  # the gap was skipped


def test_without_faster_whisper_the_flag_says_what_to_install(run_cli, tmp_path):
    try:
        check_faster_whisper()
        pytest.skip("faster-whisper is installed")
    except WhisperError as error:
        assert str(error) == INSTALL_HINT
    wav = tmp_path / "tone.wav"
    sf.write(wav, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    started = time.monotonic()
    result = run_cli("live", "--simulate", wav, "--transcribe", "small")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"streamdiar: error: {INSTALL_HINT}"]
    assert time.monotonic() - started < 30  # told before any model loads
    assert run_cli("live", "--simulate", wav, "--transcript", "out.srt").stderr == (
        "streamdiar: error: --transcript and --language need --transcribe MODEL\n"
    )


_FAKE_FASTER_WHISPER = '''
class WhisperModel:
    def __init__(self, model, **options):
        raise OSError("cannot find the requested files in the local cache\\nsecond line")
'''


def test_a_model_not_on_this_machine_is_one_line_and_exit_2(run_cli, tmp_path, monkeypatch):
    made: list[tuple[str, dict]] = []

    class Missing:
        def __init__(self, model: str, **options: Any) -> None:
            made.append((model, options))
            raise OSError("cannot find the requested files in the local cache\nmore")

    monkeypatch.setitem(sys.modules, "faster_whisper", types.SimpleNamespace(WhisperModel=Missing))
    for device, compute in (("cuda", "float16"), ("mps", "int8")):
        with pytest.raises(WhisperError) as raised:
            load_whisper("small", device)
        assert made[-1] == (
            "small",
            {"device": device if device == "cuda" else "cpu", "compute_type": compute,
             "local_files_only": True},
        )  # fmt: skip
        assert str(raised.value).startswith(
            "cannot load Whisper model 'small': cannot find the requested files in the local "
            "cache (only models already on this machine are used"
        )

    # through the command line, with such a faster_whisper importable
    (tmp_path / "faster_whisper.py").write_text(_FAKE_FASTER_WHISPER)
    wav = tmp_path / "tone.wav"
    sf.write(wav, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    paths = f"{tmp_path}:{Path(__file__).resolve().parents[1]}"
    result = run_cli(
        "live", "--simulate", wav, "--transcribe", "small", "--device", "cpu",
        extra_env={"PYTHONPATH": paths},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "streamdiar: error: cannot load Whisper model 'small': cannot find the requested files"
    )
    assert "Traceback" not in result.stderr and "listening to" not in result.stderr
