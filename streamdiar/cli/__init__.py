"""The `streamdiar` command: diarize audio files as they stream, score RTTM files."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol, TextIO

from streamdiar import __version__
from streamdiar.cli.batch_command import add_batch_command
from streamdiar.cli.bench import add_bench_command
from streamdiar.cli.generate import add_generate_command
from streamdiar.cli.interrupts import stop_on_sigterm
from streamdiar.cli.live import add_live_command
from streamdiar.cli.model_flags import add_diarization_flags, model_source
from streamdiar.cli.serve import add_serve_command
from streamdiar.cli.progress import (
    ProgressDisplay,
    add_progress_flag,
    follow,
    make_progress,
    measure,
)
from streamdiar.cli.speakers_command import add_speakers_commands, add_speakers_flag
from streamdiar.cli.transcript_command import add_transcript_command
from streamdiar.core.types import Turn
from streamdiar.errors import StreamdiarError, UserError
from streamdiar.memory import fix_mmap_threshold
from streamdiar.settings import check_backend, check_settings
from streamdiar.stream.naming import NamingAnnouncer
from streamdiar.stream.sinks import JsonlWriter, RttmWriter, TimelinePrinter
from streamdiar.stream.sources import AudioInfo, probe

if TYPE_CHECKING:
    from streamdiar.diarizer import Diarizer

EXIT_RUNTIME_ERROR = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class TurnWriter(Protocol):
    def write(self, uri: str, turn: Turn) -> None: ...


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"streamdiar: error: {message} (see: {self.prog} --help)\n")


def _say(text: str) -> None:
    """One line on stderr, whatever line breaks `text` holds."""
    print(f"streamdiar: {' '.join(text.split())}", file=sys.stderr, flush=True)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Replaces warnings.showwarning: one line, without the source location."""
    _say(f"warning: {message}")


def _uris(inputs: list[AudioInfo]) -> list[str]:
    """The uri (file stem) of each input, which must tell the files apart in the outputs."""
    seen: dict[str, Path] = {}
    for info in inputs:
        uri = info.path.stem
        if uri in seen:
            raise UserError(f"{seen[uri]} and {info.path} would share the uri {uri!r}: rename one")
        seen[uri] = info.path
    return list(seen)


async def _diarize_files(
    inputs: list[AudioInfo],
    uris: list[str],
    diarizer: Diarizer,
    writers: list[TurnWriter],
    display: ProgressDisplay,
    jsonl: JsonlWriter | None,
) -> list[str]:
    """Runs the files one after the other; returns a summary line per file. Each speaker
    named after an enrolled person is announced (on stderr, and in `jsonl`) before the first
    turn that carries the name."""
    summaries = []
    for info, uri in zip(inputs, uris):
        turns = diarizer.stream(info.path)
        announce = NamingAnnouncer(turns.stats.namings, display.note, jsonl, uri)
        name = info.path.name
        display.start(name, info.duration)
        started = time.perf_counter()
        watcher = asyncio.create_task(follow(display, name, info.duration, turns.stats, started))
        try:
            async for turn in turns:
                announce()
                for writer in writers:
                    writer.write(uri, turn)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await turns.aclose()
        announce()
        done = measure(name, info.duration, turns.stats, started)
        display.finish(done)
        summaries.append(done.summary())
    return summaries


def _diarize(args: argparse.Namespace) -> int:
    stop_on_sigterm()
    check_backend(args.backend)
    check_settings(args.latency, args.window, args.step, args.batch_size)
    inputs = [probe(path) for path in args.audio]  # every file, before any work
    uris = _uris(inputs)
    with ExitStack() as outputs:
        writers: list[TurnWriter] = []
        if args.rttm is not None:
            writers.append(outputs.enter_context(RttmWriter(args.rttm)))
        # imported here: torch takes seconds to import, which --help and input errors skip
        from streamdiar.diarizer import Diarizer

        display = make_progress(args.progress)
        diarizer = Diarizer(
            args.backend,
            args.device,
            math.inf if args.offline else args.latency,
            window=args.window,
            step=args.step,
            batch_size=args.batch_size,
            model_source=model_source(args),
            speakers=args.speakers,
        )
        display.note(f"Using device: {diarizer.device}")
        with display:
            # made while the display runs, so that a bar sharing the terminal stays below
            jsonl = JsonlWriter() if args.jsonl else None
            writers.append(jsonl or TimelinePrinter())
            summaries = asyncio.run(
                _diarize_files(inputs, uris, diarizer, writers, display, jsonl)
            )
    for summary in summaries:
        print(summary, file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    # imported here: pyannote.metrics takes seconds to import
    from streamdiar.evaluation import diarization_error_rate, format_report, load_rttm, load_uem

    reference = load_rttm(args.ref)
    hypothesis = load_rttm(args.hyp)
    uem = load_uem(args.uem) if args.uem is not None else None
    print(format_report(diarization_error_rate(reference, hypothesis, uem)))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="streamdiar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"streamdiar {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND"
    )

    diarize = commands.add_parser(
        "diarize",
        parents=[common],
        help="who spoke when in audio files, written as turns are committed",
        description="Who spoke when in audio files, written as turns are committed.",
    )
    diarize.set_defaults(run=_diarize)
    add = diarize.add_argument
    add("audio", nargs="+", type=Path, metavar="AUDIO", help="audio files")
    add("--rttm", type=Path, metavar="OUT.rttm", help="also write the turns to this RTTM file")
    add("--jsonl", action="store_true", help="JSON lines on stdout instead of a timeline")
    add_diarization_flags(diarize)
    add(
        "--offline",
        action="store_true",
        help="commit nothing before the end of each file, so every window keeps the label of "
        "the clustering's last look at it (for comparison with streaming; ignores --latency)",
    )
    add(
        "--window",
        type=float,
        metavar="S",
        help="window length (default: the backend's; campplus 10 s in files, 8 s with "
        "--batch-size 1)",
    )
    add(
        "--step",
        type=float,
        metavar="S",
        help="step between windows (default: the backend's; campplus 1 s in files, 0.5 s "
        "with --batch-size 1)",
    )
    add(
        "--batch-size",
        type=int,
        metavar="N",
        help="windows per batch (default: for the backend and device: on CPU 16 campplus, 4 "
        "pyannote, 32 embedded; on CUDA 64 and 128); campplus shares one CAM++ pass among 16 "
        "consecutive windows of a batch, and 1 gives the turns live capture gives",
    )
    add_speakers_flag(diarize)
    add_progress_flag(diarize)

    evaluate = commands.add_parser(
        "eval",
        parents=[common],
        help="diarization error rate of a hypothesis RTTM against a reference",
        description="Diarization error rate (no collar, overlap scored), per file and overall.",
    )
    evaluate.set_defaults(run=_evaluate)
    add = evaluate.add_argument
    add("--ref", type=Path, required=True, metavar="REF.rttm", help="reference turns")
    add("--hyp", type=Path, required=True, metavar="HYP.rttm", help="hypothesis turns")
    add("--uem", type=Path, metavar="UEM", help="regions to score (default: all speech)")
    add_live_command(commands, common)
    add_serve_command(commands, common)
    add_bench_command(commands, common)
    add_transcript_command(commands, common)
    add_generate_command(commands, common)
    add_batch_command(commands, common)
    add_speakers_commands(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    fix_mmap_threshold()
    warnings.showwarning = _show_warning
    try:
        return args.run(args)
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of stdout is gone; point stdout at devnull so the final flush stays quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_RUNTIME_ERROR
    except StreamdiarError as error:
        if args.debug:
            raise
        _say(f"error: {error}")
        return EXIT_USER_ERROR
    except Exception as error:
        if args.debug:
            raise
        _say(f"error: {type(error).__name__}: {error} (--debug shows the traceback)")
        return EXIT_RUNTIME_ERROR

