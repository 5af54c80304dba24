"""`streamdiar bench --serve`: how many live streams one `streamdiar serve` keeps up with.

The server runs as a child process (`streamdiar serve --port 0`), as it would in use; for each
count of streams, that many clients (`streamdiar.server.client`) stream the benchmark's
generated conversation at real-time pace at once, their starts spread over one step. A row
per count: the audio dropped, the lag of the committed timeline behind the audio once the
first window is whole, how long the last turns took after the stop, the CPU time of the server
and of everything else on the machine, and the DER. A count keeps up when every stream kept
up (`StreamResult.kept_up`: nothing dropped, the lag within the latency and 3 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from streamdiar.cli.model_flags import model_arguments
from streamdiar.errors import UserError

STARTUP_SECONDS = 300.0  # loading (and on first use exporting) the models
SERVING = re.compile(r"serving on (http://\S+?)/ ")


class ServerProcess:
    """`streamdiar serve --port 0 ...` in a child process, and its address."""

    def __init__(self, flags: list[str], environment: dict[str, str]) -> None:
        command = [sys.executable, "-m", "streamdiar.cli", "serve", "--port", "0", *flags]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=environment)
        self.url = self._address()

    def _address(self) -> str:
        assert self.process.stderr is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        lines = []
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            lines.append(line.strip())
            if match := SERVING.search(line):
                return match.group(1)
        self.stop()
        raise UserError(f"streamdiar serve did not start: {lines[-1] if lines else 'no output'}")

    def cpu_seconds(self) -> float | None:
        """User and system CPU time of the server so far (Linux), else None."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def machine_cpu_seconds() -> float | None:
    """CPU time every process of this machine has used so far (Linux), else None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(value) for value in fields[:8]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def measure_streams(
    server: ServerProcess, streams: int, audio: Path, reference: Path, window: float, latency: float
) -> dict:
    """`streams` clients streaming `audio` at once, at real-time pace; one row."""
    from pyannote.core import Annotation, Segment

    from streamdiar.evaluation import diarization_error_rate, load_rttm
    from streamdiar.server.client import stream_file

    async def all_streams() -> list:
        async def one(index: int):  # starts spread over one step, as clients come and go
            await asyncio.sleep(index * 0.5 / streams)
            return await stream_file(server.url.replace("http", "ws", 1) + "/v1/stream", audio)

        return await asyncio.gather(*(one(index) for index in range(streams)))

    cpu_before, machine_before = server.cpu_seconds(), machine_cpu_seconds()
    started = time.monotonic()
    results = asyncio.run(all_streams())
    wall = time.monotonic() - started
    cpu_after, machine_after = server.cpu_seconds(), machine_cpu_seconds()
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    others = None
    if server_cpu is not None and machine_before is not None and machine_after is not None:
        # everything else on the machine, these clients included: a busy machine keeps up
        # with fewer streams
        others = max(0.0, machine_after - machine_before - server_cpu)
    ends = [result.last("summary") or {} for result in results]
    if not all(ends):
        raise UserError(f"a stream ended without its summary: {results[0].events[-1:]}")
    references = load_rttm(reference)
    uri = audio.stem
    ders = []
    for result in results:
        hypothesis = Annotation(uri=uri)
        for turn in result.turns:
            hypothesis[Segment(turn.start, turn.end)] = turn.speaker
        ders.append(diarization_error_rate({uri: references[uri]}, {uri: hypothesis}).der)
    dropped = sum(end["dropped"] for end in ends)
    return {
        "streams": streams,
        "audio_seconds": ends[0]["received"],
        "dropped_seconds": dropped,
        "max_lag_seconds": max(result.steady_lag(window, latency) for result in results),
        "end_wait_seconds_median": median(result.end_wait for result in results),
        "server_cpu_seconds": server_cpu,
        "other_cpu_seconds": others,
        "wall_seconds": wall,
        "der_mean": sum(ders) / len(ders),
        "keeps_up": all(result.kept_up(window, latency) for result in results),
    }


def serve_table(rows: list[dict], machine: str, date: str) -> str:
    lines = [
        f"Measured on {machine}, {date}.",
        "",
        "| backend | device | runtime | streams | audio each | dropped (all streams) "
        "| steady lag, max | last turns after end (median) | server CPU | other CPU | DER (mean) | keeps up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cores = [
            "—" if row[key] is None else f"{row[key] / row['wall_seconds']:.2f} cores"
            for key in ("server_cpu_seconds", "other_cpu_seconds")
        ]
        lines.append(
            f"| {row['backend']} | {row['device']} | {row['runtime']} | {row['streams']} "
            f"| {row['audio_seconds']:g} s | {row['dropped_seconds']:.1f} s "
            f"| {row['max_lag_seconds']:.1f} s | {row['end_wait_seconds_median']:.1f} s "
            f"| {' | '.join(cores)} | {100 * row['der_mean']:.1f} % "
            f"| {'yes' if row['keeps_up'] else 'no'} |"
        )
    capacity = max((row["streams"] for row in rows if row["keeps_up"]), default=0)
    lines += ["", f"Keeps up with {capacity} stream{'' if capacity == 1 else 's'} at most."]
    return "\n".join(lines) + "\n"


def serve_rows(args: argparse.Namespace, audio_of, record) -> None:
    """Each backend, device and runtime: a server, then each count of streams against it.
    `audio_of(seconds)` gives the audio and reference, `record(row)` takes each row."""
    from streamdiar.core.runtimes import RUNTIMES

    flags = ["--max-streams", str(max(args.streams)), "--latency", str(args.latency)]
    flags += model_arguments(args)
    for backend in args.backend:
        for device in args.device:
            runtimes = args.runtime if (backend, device) == ("campplus", "cpu") else [RUNTIMES[0]]
            for runtime in runtimes:
                environment = {**os.environ, "STREAMDIAR_RUNTIME": runtime}
                server = ServerProcess(
                    [*flags, "--backend", backend, "--device", device], environment
                )
                try:
                    ready = _ready(server)
                    for seconds in args.durations:
                        audio, reference = audio_of(seconds)
                        for streams in args.streams:
                            row = measure_streams(
                                server, streams, audio, reference, ready["window"], args.latency
                            )
                            # the device the server got, which may be CPU after a fallback
                            record({"backend": backend, "device": ready["device"],
                                    "runtime": runtime, **row})  # fmt: skip
                finally:
                    server.stop()


def _ready(server: ServerProcess) -> dict:
    """The server's settings: the ready message of a stream started and ended at once."""
    import json

    from websockets.sync.client import connect

    with connect(server.url.replace("http", "ws", 1) + "/v1/stream") as socket:
        socket.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"}))
        ready = json.loads(socket.recv())
        socket.send(json.dumps({"type": "end"}))
        return ready
