"""`streamdiar bench`: real-time factor, peak memory and where the time goes, for each backend,
device, audio duration and mode, written as a Markdown table and as JSON.

The audio is a generated conversation (`streamdiar.synthetic`) with its reference, so each row
also has a DER. Every run is a child process (`streamdiar.cli.bench_run`): its peak RSS is its own,
and one run's caches do not help the next. Rows are written as they finish.

Nothing here imports torch at module level: `streamdiar.cli` imports this module, and
`streamdiar --help` and errors in the arguments should not wait seconds for torch.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from streamdiar.cli.bench_serve import serve_rows, serve_table
from streamdiar.cli.model_flags import add_model_flags, model_arguments
from streamdiar.core.runtimes import RUNTIMES
from streamdiar.errors import UserError
from streamdiar.settings import BACKENDS
from streamdiar.stream.sinks import OutputError
from streamdiar.synthetic import SynthesisError, generate_conversation

DEFAULT_DURATIONS = "30,300,1800,3600"
DEFAULT_STREAMS = "1,2,3,4,6,8"
SERVE_SECONDS = 30.0
PYANNOTE_AUDIO_MAX = 300.0  # s: longer audio through pyannote.audio's own pipeline takes hours on CPU


@dataclass(frozen=True)
class Run:
    backend: str
    device: str
    runtime: str  # what runs the models on CPU ($STREAMDIAR_RUNTIME: `runtimes`)
    mode: str
    seconds: float  # audio duration


def _numbers(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, got {text!r}") from None
    if not all(value > 0 for value in values):
        raise argparse.ArgumentTypeError(f"durations must be positive, got {text!r}")
    return values


def _counts(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated counts, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def machine_label(devices: list[str]) -> str:
    """CPU model and core count, and the GPU's name where `devices` has CUDA and it is there."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    label = f"{cpu}, {os.cpu_count()} cores"
    if "cuda" in devices:
        import torch  # only here: the table of a CPU run needs no torch in this process

        if torch.cuda.is_available():
            label += f", {torch.cuda.get_device_name()}"
    return label


def bench_audio(directory: Path, seconds: float, speakers: int) -> tuple[Path, Path]:
    """A generated conversation of `seconds` and its reference RTTM, made once per directory.
    From 3 minutes on, the last speaker is away for the middle third and then comes back."""
    stem = f"conversation-{speakers}spk-{seconds:g}s"
    audio, reference = directory / f"{stem}.wav", directory / f"{stem}.rttm"
    if not (audio.is_file() and reference.is_file()):
        directory.mkdir(parents=True, exist_ok=True)
        absent = (seconds / 3, 2 * seconds / 3) if seconds >= 180 else None
        print(f"streamdiar: generating {seconds:g} s of {speakers} voices in {audio}", file=sys.stderr)
        partial = audio.with_suffix(".partial.wav")
        generate_conversation(partial, reference, seconds, speakers, 0, absent, uri=stem)
        partial.replace(audio)  # a generation cut short is never taken for a finished one
    return audio, reference


def planned_runs(args: argparse.Namespace) -> Iterator[Run]:
    for backend in args.backend:
        for device in args.device:
            # only the default backend on CPU has a choice of runtime
            runtimes = args.runtime if (backend, device) == ("campplus", "cpu") else ["torch"]
            for runtime, seconds in itertools.product(runtimes, args.durations):
                for mode in args.modes:
                    yield Run(backend, device, runtime, mode, seconds)
                if backend == "pyannote" and seconds <= args.pyannote_audio_max:
                    yield Run(backend, device, runtime, "pyannote.audio", seconds)


def measure_run(run: Run, audio: Path, reference: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, "-m", "streamdiar.cli.bench_run", "--audio", str(audio),
        "--reference", str(reference), "--mode", run.mode, "--backend", run.backend,
        "--device", run.device,
    ]  # fmt: skip
    if args.batch_size is not None:
        command += ["--batch-size", str(args.batch_size)]
    command += model_arguments(args)
    environment = {**os.environ, "STREAMDIAR_RUNTIME": run.runtime}
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise UserError(f"{run.backend} on {run.device}, {run.mode}, {run.seconds:g} s failed: {lines[-1]}")
    return {"audio_file": audio.name, **json.loads(result.stdout)}


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _runtime(row: dict) -> str:
    """The runtime asked for, and in brackets what ran the models (`auto` picks per mode)."""
    asked, ran_on = row.get("runtime", "—"), row.get("models_ran_on")
    return asked if ran_on in (None, asked) else f"{asked} ({ran_on})"


def markdown_table(rows: list[dict], machine: str, date: str) -> str:
    lines = [
        f"Measured on {machine}, {date}.",
        "",
        "| backend | device | runtime | mode | audio | real-time factor | model per batch (median) "
        "| peak RSS | decode | segmentation | embedding | clustering | speakers | DER |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        split = ["—"] * 4
        if "embedding_seconds" in row:
            total = row["seconds"]
            split = [
                f"{row[name]:.1f} s ({100 * row[name] / total:.0f} %)"
                for name in (
                    "decode_seconds", "segmentation_seconds", "embedding_seconds", "clustering_seconds",
                )
            ]  # fmt: skip
        der = row.get("der")
        batch = f"{row['batch_ms_median']:.0f} ms" if "batch_ms_median" in row else "—"
        lines.append(
            f"| {row['backend']} | {row['device']} | {_runtime(row)} | {row['mode']} "
            f"| {_duration(row['audio_seconds'])} "
            f"| {row['rtf']:.3f} | {batch} | {row['peak_rss_mb']:.0f} MB | {' | '.join(split)} "
            f"| {row.get('speakers', '—')} | {'—' if der is None else f'{100 * der:.1f} %'} |"
        )
    return "\n".join(lines) + "\n"


def _bench(args: argparse.Namespace) -> int:
    if (args.batch_size is not None and args.batch_size < 1) or args.speakers < 1:
        raise UserError("--batch-size and --speakers must be at least 1")
    unknown = set(args.backend) - set(BACKENDS)
    if unknown:
        raise UserError(
            f"unknown backend {sorted(unknown)[0]!r}: choose from {', '.join(BACKENDS)}"
        )
    unknown = set(args.runtime) - set(RUNTIMES)
    if unknown:
        raise UserError(f"unknown runtime {sorted(unknown)[0]!r}: choose from {', '.join(RUNTIMES)}")
    if args.durations is None:
        args.durations = [SERVE_SECONDS] if args.serve else _numbers(DEFAULT_DURATIONS)
    if args.serve and min(args.streams) < 1:
        raise UserError("--streams must be at least 1")
    unknown = set(args.modes) - {"file", "streaming"}
    if unknown:
        raise UserError(f"unknown mode {sorted(unknown)[0]!r}: choose from file, streaming")
    machine = args.machine or machine_label(args.device)
    date = datetime.date.today().isoformat()
    rows: list[dict] = []

    def audio_of(seconds: float) -> tuple[Path, Path]:
        try:
            return bench_audio(args.audio_dir, seconds, args.speakers)
        except (OSError, OutputError, SynthesisError) as error:
            raise UserError(f"cannot make the benchmark audio: {error}") from error

    def table() -> str:
        return (serve_table if args.serve else markdown_table)(rows, machine, date)

    def record(row: dict, line: str) -> None:
        rows.append(row)
        print(f"streamdiar: {line}", file=sys.stderr, flush=True)
        report = {"machine": machine, "date": date, "rows": rows}
        for path, text in ((args.markdown, table()), (args.json, json.dumps(report, indent=2))):
            if path is not None:
                path.write_text(text)

    if args.serve:
        serve_rows(
            args,
            audio_of,
            lambda row: record(
                row,
                f"serve {row['backend']} {row['device']} {row['runtime']}, {row['streams']} "
                f"streams: {row['dropped_seconds']:.1f} s dropped, lag at most "
                f"{row['max_lag_seconds']:.1f} s",
            ),
        )
    else:
        for run in planned_runs(args):
            audio, reference = audio_of(run.seconds)
            row = measure_run(run, audio, reference, args)
            # random weights or another pipeline's labels: no meaningful DER
            if run.mode == "pyannote.audio" or (run.backend == "pyannote" and args.random_weights):
                row["der"] = None
            record(
                row,
                f"{run.backend} {row['device']} {run.runtime} {run.mode} "
                f"{_duration(run.seconds)}: real-time factor {row['rtf']:.3f}, peak RSS {row['peak_rss_mb']:.0f} MB",
            )
    print(table(), end="")
    return 0


def add_bench_command(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    bench = commands.add_parser(
        "bench",
        parents=[common],
        help="real-time factor, peak memory and time split, per backend, device and duration",
        description="Diarizes generated conversations of each duration with each backend, "
        "device and mode, each run in its own process, and prints a Markdown table: real-time "
        "factor, peak RSS, time in decoding, segmentation, embedding and clustering, speakers "
        "found and DER. With the pyannote backend, pyannote.audio's own pipeline is timed on "
        "the same audio and models too.",
    )
    bench.set_defaults(run=_bench)
    add = bench.add_argument
    add(
        "--backend",
        type=_names,
        default=[BACKENDS[0]],
        help=f"comma-separated, of {', '.join(BACKENDS)} (default: {BACKENDS[0]})",
    )
    add("--device", type=_names, default=["cpu"], help="comma-separated devices (default: cpu)")
    add(
        "--runtime",
        type=_names,
        default=[RUNTIMES[0]],
        help=f"comma-separated, of {', '.join(RUNTIMES)}: what runs the default backend's models "
        f"on CPU (default: {RUNTIMES[0]})",
    )
    add_model_flags(bench)
    add(
        "--durations",
        type=_numbers,
        metavar="S,S,...",
        help=f"audio durations in seconds (default: {DEFAULT_DURATIONS}; with --serve "
        f"{SERVE_SECONDS:g})",
    )
    add(
        "--modes",
        type=_names,
        default=["file", "streaming"],
        help="file (batched), streaming (one window at a time, 0.5 s step) (default: both)",
    )
    add(
        "--pyannote-audio-max",
        type=float,
        default=PYANNOTE_AUDIO_MAX,
        metavar="S",
        help="time pyannote.audio's own pipeline up to this duration (default: "
        f"{PYANNOTE_AUDIO_MAX:g})",
    )
    add("--speakers", type=int, default=4, metavar="N", help="voices in the audio (default: 4)")
    add(
        "--audio-dir",
        type=Path,
        default=Path.home() / ".cache" / "streamdiar" / "bench",
        metavar="DIR",
        help="where generated audio is kept for later runs (default: ~/.cache/streamdiar/bench)",
    )
    add(
        "--batch-size",
        type=int,
        metavar="N",
        help="windows per batch in file mode and pyannote.audio (default: chosen for the device)",
    )
    add(
        "--serve",
        action="store_true",
        help="instead of the modes: how many live streams `streamdiar serve` keeps up with, "
        "each streaming the audio at real-time pace, for each count of --streams",
    )
    add(
        "--streams",
        type=_counts,
        default=_counts(DEFAULT_STREAMS),
        metavar="N,N,...",
        help=f"with --serve: counts of concurrent streams (default: {DEFAULT_STREAMS})",
    )
    add(
        "--latency",
        type=float,
        default=2.0,
        metavar="S",
        help="with --serve: the server's latency (default: 2)",
    )
    add("--markdown", type=Path, metavar="OUT.md", help="also write the table here")
    add("--json", type=Path, metavar="OUT.json", help="write every number here as JSON")
    add("--machine", metavar="TEXT", help="machine label for the table (default: CPU and cores)")
