"""Throughput of `streamdiar batch` on this machine's CPU with 1 and 2 workers, on one set.

The set: the development recordings and generated conversations (espeak-ng). The batch runs
once per worker count, each time into a fresh folder, and a Markdown table is printed:
workers and threads each, audio, wall time from start to end (starting the workers and
loading the models included), throughput in x real time, and the median real-time factor of
a file inside its worker.

    .venv/bin/python scripts/batch_throughput.py --workers 1,2 --conversations 4 --seconds 120
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streamdiar.batch.job import plan_workers
from streamdiar.synthetic import generate_conversation

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="worker counts (default: 1,2)")
    parser.add_argument("--conversations", type=int, default=4, help="generated (default: 4)")
    parser.add_argument("--seconds", type=float, default=120.0, help="each (default: 120)")
    parser.add_argument("--dev", type=Path, default=DEV, help="folder of the dev recordings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = sorted(args.dev.glob("dev*.wav")) + [args.dev / "sample.wav"]
        for seed in range(args.conversations):
            files.append(folder / f"talk{seed}.wav")
            generate_conversation(files[-1], folder / f"talk{seed}.rttm", args.seconds, 3, seed)
        print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
        print(
            "| workers | threads each | files | audio | wall time | x real time "
            "| file RTF (median) |"
        )
        print("|---|---|---|---|---|---|---|")
        for workers in (int(n) for n in args.workers.split(",")):
            out = folder / f"out{workers}"
            command = [
                sys.executable, "-m", "streamdiar.cli", "batch", *map(str, files),
                "--out", str(out), "--workers", str(workers), "--device", "cpu",
                "--progress", "none",
            ]  # fmt: skip
            started = time.perf_counter()
            subprocess.run(command, check=True)
            wall = time.perf_counter() - started
            rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
            audio = sum(row["audio_seconds"] for row in rows)
            _, threads = plan_workers(len(os.sched_getaffinity(0)), 0, workers, None)
            factor = statistics.median(row["real_time_factor"] for row in rows)
            print(
                f"| {workers} | {threads} | {len(rows)} | {audio / 60:.1f} min | {wall:.1f} s "
                f"| {audio / wall:.1f} | {factor:.3f} |",
                flush=True,
            )
        print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
