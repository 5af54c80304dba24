"""`streamdiar transcript`: who said what, from audio and a Whisper transcript of it.

The audio is diarized with the streaming pipeline and each transcript segment is labelled as
soon as the diarization is final over it, so that the output grows with the diarization (and,
with --follow, with a transcript that is still being written).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from streamdiar.cli.model_flags import add_diarization_flags, diarizer_from_flags
from streamdiar.cli.progress import (
    ProgressDisplay,
    add_progress_flag,
    follow,
    make_progress,
    measure,
)
from streamdiar.cli.speakers_command import add_speakers_flag
from streamdiar.core.types import Turn
from streamdiar.errors import UserError
from streamdiar.settings import check_backend, check_settings
from streamdiar.stream.naming import NamingAnnouncer
from streamdiar.stream.sinks import OutputError, RttmWriter
from streamdiar.stream.sources import AudioInfo, file_blocks, probe
from streamdiar.transcript.align import DEFAULT_TOLERANCE
from streamdiar.transcript.follow import POLL_SECONDS, follow_segments
from streamdiar.transcript.live import LiveAligner
from streamdiar.transcript.readers import TranscriptError, check_times, read_transcript
from streamdiar.transcript.types import LabelledSegment, Segment
from streamdiar.transcript.writers import FORMATS, TranscriptWriter, format_of

if TYPE_CHECKING:
    from streamdiar.stream.pipeline import StreamingDiarizer

IDLE_SECONDS = 3.0


def speaker_names(text: str) -> dict[str, str]:
    """`SPEAKER_00=Alice,SPEAKER_01=Bob` as a mapping; ValueError says what is wrong."""
    names = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        label, equals, name = (part.strip() for part in pair.partition("="))
        if not equals or not label or not name:
            raise ValueError(f"--speaker-names: expected LABEL=NAME pairs, got {pair!r}")
        if any(c in name for c in "[]<>\n"):
            raise ValueError(f"--speaker-names: name {name!r} must not hold [ ] < or >")
        names[label] = name
    return names


def add_transcript_command(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    command = commands.add_parser(
        "transcript",
        parents=[common],
        help="who said what: a Whisper transcript labelled with the speakers of the audio",
        description="Diarize AUDIO and label each word or segment of its transcript with the "
        "speaker heard over most of it; segments whose speaker changes are split.",
    )
    command.set_defaults(run=_transcript)
    add = command.add_argument
    add("audio", type=Path, metavar="AUDIO", help="the audio that was transcribed")
    add(
        "--whisper",
        required=True,
        metavar="FILE",
        help="whisper.cpp JSON, openai-whisper / faster-whisper / WhisperX JSON, JSON lines, SRT "
        "or WebVTT (with --follow: JSON lines, - for standard input)",
    )
    add("-o", "--output", type=Path, metavar="OUT", help="OUT.srt, .vtt, .json, .txt or .md")
    add("--rttm", type=Path, metavar="OUT.rttm", help="also write the turns to this RTTM file")
    add("--format", choices=FORMATS, help="output format (default: from OUT's suffix, else txt)")
    add(
        "--follow",
        action="store_true",
        help="the transcript is JSON lines still being written: label each line once the "
        "diarization is final over it",
    )
    add(
        "--idle",
        type=float,
        default=IDLE_SECONDS,
        metavar="S",
        help=f"with --follow: stop once the diarization is done and the file has not grown for "
        f"S seconds (default: {IDLE_SECONDS:g})",
    )
    add(
        "--speaker-names",
        default="",
        metavar="LABEL=NAME,...",
        help="names for speaker labels, e.g. SPEAKER_00=Alice,SPEAKER_01=Bob",
    )
    add(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        metavar="S",
        help="a word no turn overlaps takes the nearest turn's speaker within S seconds, else "
        f"'unknown' (default: {DEFAULT_TOLERANCE:g})",
    )
    add_diarization_flags(command)
    add_speakers_flag(command)
    add_progress_flag(command)


def _transcript(args: argparse.Namespace) -> int:
    try:
        names = speaker_names(args.speaker_names)
        kind = args.format or (format_of(args.output) if args.output else "txt")
        if args.tolerance < 0 or args.idle < 0:
            raise ValueError("--tolerance and --idle must not be negative")
    except ValueError as error:
        raise UserError(str(error)) from error
    if args.follow and args.whisper != "-" and not Path(args.whisper).is_file():
        raise TranscriptError(f"{args.whisper}: no such file")
    if not args.follow and args.whisper == "-":
        raise TranscriptError("reading the transcript from standard input (-) needs --follow")
    check_backend(args.backend)
    check_settings(args.latency, None, None, 1)
    info = probe(args.audio)
    segments = None
    if not args.follow:
        segments = check_times(read_transcript(args.whisper), info.duration, args.whisper)
    with contextlib.ExitStack() as outputs:
        rttm = outputs.enter_context(RttmWriter(args.rttm)) if args.rttm else None
        writer = TranscriptWriter(outputs.enter_context(_output(args.output)), kind)

        def on_turn(turn: Turn) -> None:
            if rttm is not None:
                rttm.write(info.path.stem, turn)

        _run(args, info, segments, on_turn, lambda s: writer.write(s.renamed(names)))
        writer.close()
    return 0


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    try:
        stream = path.open("w", encoding="utf-8")
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror}") from None
    with stream:
        yield stream


def _run(
    args: argparse.Namespace,
    info: AudioInfo,
    segments: list[Segment] | None,
    on_turn: Callable[[Turn], None],
    emit: Callable[[LabelledSegment], None],
) -> None:
    # torch and the models load only past the checks
    from streamdiar.session import build_diarizer

    display = make_progress(args.progress)
    diarizer = diarizer_from_flags(args)
    display.note(f"Using device: {diarizer.device}")
    with display:
        pipeline = build_diarizer(
            diarizer.models, args.latency, people=diarizer.people, whole_batches=True
        )
        aligner = LiveAligner(args.tolerance)
        asyncio.run(_merge(args, info, segments, pipeline, aligner, display, on_turn, emit))


async def _listed(segments: list[Segment]) -> AsyncIterator[Segment]:
    for segment in segments:
        yield segment


async def _merge(
    args: argparse.Namespace,
    info: AudioInfo,
    segments: list[Segment] | None,
    diarizer: StreamingDiarizer,
    aligner: LiveAligner,
    display: ProgressDisplay,
    on_turn: Callable[[Turn], None],
    emit: Callable[[LabelledSegment], None],
) -> None:
    """Diarizes while segments arrive; each turn goes to `on_turn` when committed, each
    labelled segment to `emit` once ready."""
    diarized = asyncio.Event()

    def emit_all(labelled: list[LabelledSegment]) -> None:
        for segment in labelled:
            emit(segment)

    announce = NamingAnnouncer(diarizer.stats.namings, display.note)

    def on_committed_turn(turn: Turn) -> None:
        announce()
        on_turn(turn)
        emit_all(aligner.push_turn(turn))

    async def watch_commits() -> None:
        stitcher = diarizer.stitcher
        while True:
            emit_all(aligner.commit(stitcher.committed_until, stitcher.open_turns()))
            await asyncio.sleep(POLL_SECONDS)

    async def read_segments() -> int:
        count = 0
        if segments is None:
            source = follow_segments(args.whisper, diarized, args.idle)
        else:
            source = _listed(segments)
        async for segment in source:
            if segments is None:
                segment = check_times([segment], info.duration, args.whisper)[0]
            count += 1
            emit_all(aligner.push_segment(segment))
        return count

    name = info.path.name
    display.start(name, info.duration)
    started = time.perf_counter()
    reader = asyncio.create_task(read_segments())
    watchers = [
        asyncio.create_task(watch_commits()),
        asyncio.create_task(follow(display, name, info.duration, diarizer.stats, started)),
    ]
    diarization = asyncio.create_task(diarizer.run(file_blocks(info.path), on_committed_turn))
    try:
        running = {diarization, reader}
        while diarization in running:  # a broken transcript line ends the run at once
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        diarized.set()
        emit_all(aligner.finish())
        count = await reader
    finally:
        for task in [*watchers, reader, diarization]:
            task.cancel()
        await asyncio.gather(*watchers, reader, diarization, return_exceptions=True)
    display.finish(measure(name, info.duration, diarizer.stats, started))
    if args.follow and count == 0:
        raise TranscriptError(f"{args.whisper}: no transcript segment arrived")
