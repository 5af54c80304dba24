"""`streamdiar batch`: an archive of audio files diarized as one resumable job, by local
worker processes or by Ray actors.

Per file it writes what `streamdiar diarize --rttm` and `--jsonl` write (and, given a Whisper
transcript, what `streamdiar transcript` writes), each output whole or not at all; a rerun
does the files whose outputs are missing. A row per finished file goes to the results table.
"""

from __future__ import annotations

import argparse
import os
from contextlib import closing
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from streamdiar.batch.inputs import BatchFile, collect_files
from streamdiar.batch.job import BatchTally, files_left, plan_workers
from streamdiar.batch.results import ResultRow, ResultsTable
from streamdiar.batch.worker import LoadReport, WorkerSettings
from streamdiar.cli.batch_progress import BatchDisplay, make_batch_display
from streamdiar.cli.interrupts import stop_on_sigterm
from streamdiar.cli.model_flags import add_diarization_flags, model_source
from streamdiar.cli.progress import add_progress_flag
from streamdiar.errors import UserError
from streamdiar.settings import SettingsError, check_backend, check_settings
from streamdiar.transcript.align import DEFAULT_TOLERANCE
from streamdiar.transcript.writers import FORMATS

DEFAULT_RETRIES = 2
LOCAL_RAY = "local"  # --ray without an address: a Ray of its own on this machine


def add_batch_command(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    command = commands.add_parser(
        "batch",
        parents=[common],
        help="diarize an archive of files as one resumable job, on local workers or Ray",
        description="Diarize many files into DIR: per file an RTTM, JSON lines of its turns and, "
        "given a Whisper transcript (in a manifest), a transcript with speakers; a row per file "
        "in DIR/results.jsonl and DIR/results.csv. Files whose outputs exist are skipped, so a "
        "rerun finishes what is left. Exit code 1 when a file failed.",
    )
    command.set_defaults(run=_batch)
    add = command.add_argument
    add(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio files, folders (searched recursively), globs, or manifests (.csv with a "
        "header naming path and optionally transcript and uri; .jsonl objects with those keys)",
    )
    add("--out", type=Path, required=True, metavar="DIR", help="where the outputs go")
    add(
        "--workers",
        type=int,
        metavar="N",
        help="workers, each holding the models (default: one per GPU, else one per CPU "
        "core; with --ray, of the cluster)",
    )
    add(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads per worker (default: the cores shared out among the workers)",
    )
    add(
        "--ray",
        nargs="?",
        const=LOCAL_RAY,
        metavar="ADDRESS",
        help="run the workers as Ray actors: on a Ray cluster's ADDRESS (auto: the one "
        "running on this machine), or without ADDRESS on a Ray of its own here "
        "(pip install 'streamdiar[ray]')",
    )
    add(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        metavar="N",
        help="times a file is tried again after its worker crashed or was lost "
        f"(default: {DEFAULT_RETRIES}); an undecodable file fails at once",
    )
    add(
        "--transcript-format",
        choices=FORMATS,
        default="srt",
        help="format of the transcripts with speakers (default: srt)",
    )
    add(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        metavar="S",
        help="as for `streamdiar transcript` (default: %(default)g)",
    )
    add_diarization_flags(command)
    add_progress_flag(command)


def _check(args: argparse.Namespace) -> None:
    for flag, value, least in (
        ("--workers", args.workers, 1),
        ("--threads", args.threads, 1),
        ("--retries", args.retries, 0),
    ):
        if value is not None and value < least:
            raise UserError(f"{flag} must be at least {least}, got {value}")
    if args.tolerance < 0:
        raise UserError(f"--tolerance must not be negative, got {args.tolerance:g}")
    check_backend(args.backend)
    check_settings(args.latency, None, None, None)


def _batch(args: argparse.Namespace) -> int:
    stop_on_sigterm()
    _check(args)
    files = collect_files(args.inputs)
    out_dir = args.out.resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {args.out} is a file, not a folder")
    left = files_left(files, out_dir, args.transcript_format)
    tally = BatchTally.of(left, skipped=len(files) - len(left))
    display = make_batch_display(args.progress)
    with closing(ResultsTable(out_dir)) as table, display:
        if left:
            sizes = {str(f.path): f.size for f in left}
            display.start_batch(tally)
            for row in _results(args, out_dir, left, display):
                table.append(row)
                tally.add(row, sizes[row.file])
                display.finished(row, tally)
    display.note(f"{tally.summary()}; results in {table.csv_path}")
    return 1 if tally.failed else 0


def _results(
    args: argparse.Namespace, out_dir: Path, files: list[BatchFile], display: BatchDisplay
) -> Iterator[ResultRow]:
    """The rows of `files` from local workers or Ray actors, as they finish."""
    use_gpu = _may_use_gpu(args.device)
    if args.ray is not None:
        from streamdiar.batch.ray_pool import connect, ray_results

        cores, gpus = connect(None if args.ray == LOCAL_RAY else args.ray)
        gpus = gpus if use_gpu else 0
        workers, threads = plan_workers(cores, gpus, args.workers, args.threads)
        each = _counted(threads, "CPU") + (" and 1 GPU" if gpus else "")
        display.note(f"Ray: {_counted(workers, 'worker')} of {each} each")
        run = partial(ray_results, gpus_per_worker=min(gpus, 1))
    else:
        from streamdiar.batch.local_pool import local_results

        gpus = _local_gpus() if use_gpu else 0
        workers, threads = plan_workers(_cores(), gpus, args.workers, args.threads)
        display.note(f"{_counted(workers, 'local worker')} of {_counted(threads, 'thread')} each")
        run = partial(local_results, gpus=gpus)
    settings = WorkerSettings(
        out_dir,
        args.backend,
        args.device,
        args.latency,
        model_source(args),
        args.transcript_format,
        args.tolerance,
        threads,
    )
    reports: set[LoadReport] = set()

    def on_load(report: LoadReport) -> None:
        """Says once what the workers' models run on, and what loading them warned about."""
        if report not in reports:
            reports.add(report)
            for warning in report.warnings:
                display.note(f"warning: {warning}")
            display.note(f"Using device: {report.device}")

    yield from run(files, settings, workers, args.retries, on_load=on_load)


def _counted(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


def _may_use_gpu(device_flag: str | None) -> bool:
    from streamdiar.core.device import DeviceError, requested_device

    try:
        return requested_device(device_flag) in ("auto", "gpu", "cuda")
    except DeviceError as error:
        raise SettingsError(str(error)) from None


def _local_gpus() -> int:
    import torch  # seconds to import: not before the inputs are checked

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
