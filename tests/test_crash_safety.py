"""SIGKILL at any moment leaves RTTM and JSON-lines outputs that hold whole lines only, and
every turn committed up to that moment.

Each run is `streamdiar diarize` as the command line runs it (`streamdiar.cli.main`), in a
child process forked from one "zygote" process that imported streamdiar and torch once: 20
fresh interpreters would spend most of the test importing torch. The zygote runs no torch
operation before forking, so each child starts as a fresh process would.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import soundfile as sf

import streamdiar

PROJECT_ROOT = Path(streamdiar.__file__).resolve().parents[1]

KILLS = 20
PARALLEL = 3  # runs at a time
EXCERPT = (6.5, 22.0)  # s of sample.wav
SEED = 20261125

# Reads one JSON request per line: {"argv": [...], "stdout": path, "stderr": path}; forks a
# child running the CLI with its stdout and stderr sent to those files and answers its pid;
# {"wait": pid} answers the child's wait status once it has ended.
ZYGOTE = textwrap.dedent(
    """
    import json, os, sys
    import torch  # noqa: F401  imported once, before any fork
    import streamdiar.cli, streamdiar.session  # noqa: F401
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "wait" in request:
            print(os.waitpid(request["wait"], 0)[1], flush=True)
            continue
        pid = os.fork()
        if pid == 0:
            for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os._exit(streamdiar.cli.main(request["argv"]))
        print(pid, flush=True)
    """
)


class Zygote:
    def __init__(self) -> None:
        # one thread each: the runs go side by side, and threads waiting on each other's
        # cores only burn time
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self._answer() == "ready"
        self._lock = threading.Lock()  # one request and its answer at a time

    def _answer(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def _ask(self, request: dict) -> str:
        assert self.process.stdin is not None
        with self._lock:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            return self._answer()

    def start(self, argv: list[str], stdout: Path, stderr: Path) -> int:
        return int(self._ask({"argv": argv, "stdout": str(stdout), "stderr": str(stderr)}))

    def wait(self, pid: int) -> int:
        """The child's wait status (os.waitpid's)."""
        return int(self._ask({"wait": pid}))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    process = Zygote()
    yield process
    process.close()


def rttm_turns(path: Path) -> list[tuple[float, float, str]]:
    """(start, duration, speaker) per line; fails on any line that is not a whole RTTM line."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"last line cut: {text[-80:]!r}"
    turns = []
    for line in text.splitlines():
        fields = line.split()
        assert len(fields) == 10 and fields[:3] == ["SPEAKER", "sample", "1"], line
        assert fields[5:7] == ["<NA>", "<NA>"] and fields[8:] == ["<NA>", "<NA>"], line
        turns.append((float(fields[3]), float(fields[4]), fields[7]))
    return turns


def jsonl_turns(path: Path) -> list[tuple[float, float, str]]:
    """(start, duration, speaker) per line, rounded as RTTM rounds; fails on a partial line."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"last line cut: {text[-80:]!r}"
    turns = []
    for line in text.splitlines():
        event = json.loads(line)
        assert event["event"] == "turn" and event["uri"] == "sample", line
        turns.append((event["start"], round(event["end"] - event["start"], 3), event["speaker"]))
    return turns


def same_turns(found: list, expected: list) -> bool:
    return len(found) == len(expected) and all(
        a[2] == b[2] and abs(a[0] - b[0]) < 0.0015 and abs(a[1] - b[1]) < 0.0025
        for a, b in zip(found, expected)
    )


def lines(path: Path) -> int:
    """Whole lines in `path`, which the child may not have created yet."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def run(
    zygote: Zygote,
    audio: Path,
    folder: Path,
    kill: tuple[int, float] | None,
    signum: signal.Signals = signal.SIGKILL,
) -> tuple[int, Path, Path]:
    """One run, sent `signum` `delay` s after its JSON lines hold `turns` turns, where `kill` is
    (turns, delay), or left to finish where it is None. Returns its wait status, its RTTM and
    its JSONL."""
    folder.mkdir()
    rttm, jsonl = folder / "out.rttm", folder / "out.jsonl"
    argv = ["diarize", str(audio), "--rttm", str(rttm), "--jsonl", "--device", "cpu"]
    argv += ["--batch-size", "2", "--progress", "plain"]
    pid = zygote.start(argv, jsonl, folder / "stderr.txt")
    if kill is not None:
        turns, delay = kill
        give_up = time.monotonic() + 60
        while lines(jsonl) < turns and time.monotonic() < give_up:
            time.sleep(0.01)
        time.sleep(delay)
        # safe even if it has ended: its pid stays its own, a zombie's, until waited for
        os.kill(pid, signum)
    return zygote.wait(pid), rttm, jsonl


@pytest.fixture(scope="module")
def audio(shared_data, tmp_path_factory) -> Path:
    """The part of sample.wav with five changes of speaker, to keep runs short."""
    samples, rate = sf.read(shared_data / "dev" / "sample.wav", dtype="float32")
    path = tmp_path_factory.mktemp("audio") / "sample.wav"
    sf.write(path, samples[int(EXCERPT[0] * rate) : int(EXCERPT[1] * rate)], rate)
    return path


def test_sigterm_stops_cleanly_with_whole_outputs(zygote, audio, tmp_path):
    status, rttm, jsonl = run(zygote, audio, tmp_path / "term", kill=(1, 0.0), signum=signal.SIGTERM)
    assert os.waitstatus_to_exitcode(status) == 130
    stderr = (tmp_path / "term" / "stderr.txt").read_text()
    assert stderr.splitlines()[-1] == "streamdiar: interrupted" and "Traceback" not in stderr
    in_rttm, in_jsonl = rttm_turns(rttm), jsonl_turns(jsonl)
    assert len(in_jsonl) >= 1 and same_turns(in_jsonl, in_rttm)


def test_sigkill_at_random_moments_leaves_every_committed_turn_whole(zygote, audio, tmp_path):
    status, rttm, jsonl = run(zygote, audio, tmp_path / "whole", kill=None)
    assert os.waitstatus_to_exitcode(status) == 0, (tmp_path / "whole" / "stderr.txt").read_text()
    complete = rttm_turns(rttm)
    assert len(complete) >= 3 and same_turns(jsonl_turns(jsonl), complete)

    # each kill falls a random delay after a random number of turns came out (0: at start-up)
    rng = random.Random(SEED)
    kills = [(rng.randint(0, len(complete)), rng.uniform(0.0, 1.0)) for _ in range(KILLS)]
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        runs = list(pool.map(lambda i: run(zygote, audio, tmp_path / f"kill{i}", kills[i]), range(KILLS)))
    counts = []
    for kill, (status, rttm, jsonl) in zip(kills, runs):
        if os.WIFSIGNALED(status):
            assert os.WTERMSIG(status) == signal.SIGKILL
        else:  # it finished just before the kill
            assert os.waitstatus_to_exitcode(status) == 0
        if not rttm.exists():  # killed before the output was opened
            assert not jsonl.read_text()
            counts.append(0)
            continue
        in_rttm, in_jsonl = rttm_turns(rttm), jsonl_turns(jsonl)
        assert len(in_jsonl) >= kill[0]
        # every turn sent to the JSON lines (committed) is in the RTTM, which is written first:
        # the RTTM may hold one more, when the kill fell between the two writes
        assert len(in_rttm) - len(in_jsonl) in (0, 1), (kill, in_rttm, in_jsonl)
        assert same_turns(in_jsonl, in_rttm[: len(in_jsonl)]), (kill, in_rttm, in_jsonl)
        # and what was committed is what an uninterrupted run commits first
        assert same_turns(in_rttm, complete[: len(in_rttm)]), (kill, in_rttm, complete)
        counts.append(len(in_rttm))
    print(f"turns left by the kills: {counts} of {len(complete)}")
    # the kills fell before, during and after the turns came out
    assert min(counts) < len(complete) and max(counts) > 0, counts
