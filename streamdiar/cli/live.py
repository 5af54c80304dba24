"""`streamdiar live`: who speaks now on a microphone (or a file replayed as one), and the whole
session as RTTM/JSON lines once Ctrl-C or SIGTERM ends it. With --transcribe, a transcriber
runs beside the diarizer on the same audio and its text comes out labelled with speakers.

Nothing here imports torch at module level: `streamdiar.cli` imports this module, and
`streamdiar --help` and errors in the arguments should not wait seconds for torch.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from streamdiar.cli.model_flags import add_diarization_flags, diarizer_from_flags
from streamdiar.cli.speakers_command import add_speakers_flag
from streamdiar.core.types import Turn
from streamdiar.errors import UserError
from streamdiar.settings import check_backend, check_settings
from streamdiar.stream.microphone import (
    AudioInput,
    Capture,
    Microphone,
    SimulatedMicrophone,
    input_devices,
)
from streamdiar.stream.naming import NamingAnnouncer
from streamdiar.stream.sinks import JsonlWriter, OutputError, RttmWriter
from streamdiar.transcript.live import LiveTranscription, Transcriber
from streamdiar.transcript.types import LabelledSegment
from streamdiar.transcript.whisper import prepare_whisper
from streamdiar.transcript.writers import FORMATS, TranscriptWriter, format_of

if TYPE_CHECKING:
    from streamdiar.cli.live_view import LiveView
    from streamdiar.stream.pipeline import StreamingDiarizer

# the exit code when the input device goes away: 1, as for the CLI's other failures at run time
# (the package's EXIT_RUNTIME_ERROR, not imported from there: it imports this module)
EXIT_DEVICE_LOST = 1

# (model, language or None) -> a loader of the transcriber on the diarizer's device type;
# both steps raise WhisperError, the first before any audio or model is touched
TranscriberPreparer = Callable[[str, str | None], Callable[[str], Transcriber]]


async def run_live(
    capture: Capture,
    diarizer: StreamingDiarizer,
    on_turn: Callable[[Turn], None],
    view: LiveView | None = None,
    transcription: LiveTranscription | None = None,
) -> dict[str, float]:
    """Diarizes what `capture` hears until its input ends or SIGINT/SIGTERM stops it; the
    audio captured by then is diarized and flushed, and `transcription` (if any) finishes
    what it got. Returns the talk time (s) per speaker."""
    loop = asyncio.get_running_loop()
    talk: dict[str, float] = {}
    stitcher = diarizer.stitcher

    def count_and_pass(turn: Turn) -> None:
        talk[turn.speaker] = talk.get(turn.speaker, 0.0) + turn.duration
        on_turn(turn)
        if transcription is not None:
            transcription.push_turn(turn)

    stop_signals = (signal.SIGINT, signal.SIGTERM)
    for number in stop_signals:
        loop.add_signal_handler(number, capture.stop)
    refresh = asyncio.create_task(view.run()) if view is not None else None
    try:
        capture.start()
        async with AsyncExitStack() as context:
            blocks = capture.blocks()
            if transcription is not None:
                blocks = await context.enter_async_context(
                    transcription.beside(
                        blocks, lambda: (stitcher.committed_until, stitcher.open_turns())
                    )
                )
            await diarizer.run(blocks, count_and_pass)
    finally:
        capture.stop()
        for number in stop_signals:
            loop.remove_signal_handler(number)
        if refresh is not None:
            refresh.cancel()
            await asyncio.gather(refresh, return_exceptions=True)
    return dict(sorted(talk.items()))


def summary(
    capture: Capture, talk: dict[str, float], transcription: LiveTranscription | None = None
) -> str:
    """One line: audio captured and lost, each speaker's talk time, then what was transcribed."""
    speakers = ", ".join(f"{speaker} {seconds:.1f} s" for speaker, seconds in talk.items())
    line = (
        f"{capture.source.name}: {capture.stats.captured_seconds:.1f} s captured, "
        f"{capture.stats.describe_losses()}; {len(talk)} speaker{'' if len(talk) == 1 else 's'}"
        + (f": {speakers}" if talk else "")
    )
    if transcription is not None:
        line += f"; {transcription.describe()}"
    return line


def _say(text: str) -> None:
    print(f"streamdiar: {text}", file=sys.stderr, flush=True)


def _list_devices() -> int:
    devices = input_devices()
    if not devices:
        _say("no input devices found")
    for line in devices:
        print(line)
    return 0


def _source(args: argparse.Namespace) -> AudioInput:
    if args.speed is not None and args.simulate is None:
        raise UserError("--speed applies to --simulate only")
    if args.simulate is not None:
        speed = 1.0 if args.speed is None else args.speed
        if not speed > 0:
            raise UserError(f"--speed must be positive, got {speed:g}")
        return SimulatedMicrophone(args.simulate, speed)
    return Microphone(args.input_device)


def _transcriber_setup(
    args: argparse.Namespace, prepare: TranscriberPreparer
) -> tuple[Callable[[str], Transcriber] | None, str | None]:
    """The --transcribe loader (faster-whisper checked now) and the --transcript format."""
    if args.transcribe is None:
        if args.transcript is not None or args.language is not None:
            raise UserError("--transcript and --language need --transcribe MODEL")
        return None, None
    try:
        kind = None if args.transcript is None else format_of(args.transcript)
    except ValueError:
        suffixes = ", ".join(f".{kind}" for kind in FORMATS[:-1]) + f" or .{FORMATS[-1]}"
        raise UserError(f"--transcript {args.transcript}: name it {suffixes}") from None
    return prepare(args.transcribe, args.language), kind


def _opened(path: Path) -> TextIO:
    try:
        return path.open("w", encoding="utf-8")
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror}") from None


def _segment_event(uri: str, segment: LabelledSegment) -> dict[str, Any]:
    """A labelled segment as a JSON-lines event beside the turns."""
    event: dict[str, Any] = {
        "event": "segment",
        "uri": uri,
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "speaker": segment.speaker,
        "text": segment.text,
    }
    if segment.words:
        event["words"] = [
            {"word": w.word.text, "start": round(w.word.start, 3), "end": round(w.word.end, 3),
             "speaker": w.speaker}
            for w in segment.words
        ]  # fmt: skip
    return event


def _live(args: argparse.Namespace, prepare: TranscriberPreparer = prepare_whisper) -> int:
    """The live command. `prepare` gives the --transcribe transcriber (tests pass a fake)."""
    if args.list_devices:
        return _list_devices()
    check_backend(args.backend)
    check_settings(args.latency, None, None, 1)
    load_transcriber, transcript_kind = _transcriber_setup(args, prepare)
    source = _source(args)  # a missing device or file is reported before models load
    with ExitStack() as outputs:
        writers: list[RttmWriter | JsonlWriter | LiveView] = []
        if args.rttm is not None:
            writers.append(outputs.enter_context(RttmWriter(args.rttm)))
        transcript = None
        if transcript_kind is not None:
            transcript = TranscriptWriter(
                outputs.enter_context(_opened(args.transcript)), transcript_kind
            )
        # imported here: torch takes seconds to import, which --help and input errors skip
        from streamdiar.cli.live_view import LiveView
        from streamdiar.session import build_live_diarizer

        diarizer = diarizer_from_flags(args)
        _say(f"using device {diarizer.device}")
        transcription = None
        if load_transcriber is not None:
            transcriber = load_transcriber(diarizer.device)
            _say(f"transcribing with {args.transcribe}")

            def on_segment(segment: LabelledSegment) -> None:  # runs once `view` is set
                if transcript is not None:
                    transcript.write(segment)
                if view is None:
                    jsonl.write_event(_segment_event(source.name, segment))
                else:
                    view.write_segment(segment)

            transcription = LiveTranscription(transcriber, on_segment)
        pipeline = build_live_diarizer(diarizer.models, args.latency, diarizer.people)
        capture = Capture(source)
        view = None if args.jsonl else LiveView(capture, pipeline, transcription=transcription)
        jsonl = JsonlWriter()
        writers.append(jsonl if view is None else view)

        written = 0
        announce = NamingAnnouncer(
            pipeline.stats.namings, _say, jsonl if view is None else None, source.name
        )

        def on_turn(turn: Turn) -> None:
            nonlocal written
            announce()
            for writer in writers:
                writer.write(source.name, turn)
            written += 1

        _say(
            f"listening to {source.name} ({source.samplerate} Hz, {source.channels} ch); "
            "Ctrl-C stops"
        )
        talk = asyncio.run(run_live(capture, pipeline, on_turn, view, transcription))
        if transcript is not None:
            transcript.close()
    _say(summary(capture, talk, transcription))
    if isinstance(source, Microphone) and capture.stream_ended:  # a device's ends only if it goes
        turns = f"{written} turn{'' if written == 1 else 's'}"
        _say(
            f"error: the input device {source.name!r} went away (after "
            f"{capture.stats.captured_seconds:.1f} s captured); {turns} written before"
        )
        return EXIT_DEVICE_LOST
    return 0


def add_live_command(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    """The `live` subcommand, added to the CLI's `commands`."""
    live = commands.add_parser(
        "live",
        parents=[common],
        help="who speaks now on a microphone; the session as RTTM/JSON when stopped",
        description="Diarize a microphone as it is captured. Ctrl-C (or SIGTERM) stops: the "
        "audio captured by then is diarized, written, and summed up per speaker.",
    )
    live.set_defaults(run=_live)
    add = live.add_argument
    source = live.add_mutually_exclusive_group()
    source.add_argument(
        "--input-device",
        metavar="NAME|INDEX",
        help="microphone: an index or (part of) a name from --list-devices "
        "(default: the system's default input)",
    )
    source.add_argument("--list-devices", action="store_true", help="list input devices, exit")
    source.add_argument(
        "--simulate",
        type=Path,
        metavar="FILE",
        help="replay FILE (WAV, FLAC, OGG) at real-time pace instead of a microphone",
    )
    add("--speed", type=float, metavar="X", help="replay speed of --simulate (default: 1)")
    add("--rttm", type=Path, metavar="OUT.rttm", help="also write the turns to this RTTM file")
    add("--jsonl", action="store_true", help="JSON lines on stdout instead of the live view")
    add(
        "--transcribe",
        metavar="MODEL",
        help="also transcribe with faster-whisper (if installed) and show who said what: a model "
        "already on this machine (tiny, base, small, ... or a model directory)",
    )
    add("--language", metavar="CODE", help="with --transcribe: the language (default: detected)")
    add(
        "--transcript",
        type=Path,
        metavar="OUT",
        help="with --transcribe: also write the labelled text to OUT.srt, .vtt, .json, .txt or .md",
    )
    add_diarization_flags(live)
    add_speakers_flag(live)
