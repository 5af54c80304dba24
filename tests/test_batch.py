"""`streamdiar batch` end to end, on local worker processes and on a local Ray instance (2
CPUs): the dev recordings and generated conversations get the RTTMs `streamdiar diarize`
writes for them, a corrupt file is a failed row while the others complete, a file whose
outputs cannot be written is tried again and then recorded as failed, a worker killed at work
is replaced and its file done, and a batch killed with SIGKILL finishes only the missing files
when run again.

Each worker runs its models on one thread (two workers on two cores), and so does the
reference `diarize`: the thread count changes float rounding in the models, which can move a
turn that sits on an edge.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile as sf

import streamdiar
from streamdiar.synthetic import generate_conversation

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is absent")

PROJECT_ROOT = Path(streamdiar.__file__).resolve().parents[1]
FASTER_WHISPER = Path(__file__).parent / "fixtures" / "transcripts" / "faster_whisper.json"
QUIET = ("--progress", "none")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # as each worker runs its models
ONE_WORKER = ("--workers", "1", "--threads", "1")
CONVERSATIONS = ((3, 2), (4, 3))  # seed, voices: 30 s each
RAY_NO_TOKEN = ("RAY_AUTH_MODE", "disabled")
KILL_WAIT = 180.0  # s at most for a run to finish its first file, or for workers to end
OUTPUTS = (".rttm", ".turns.jsonl")


@dataclass(frozen=True)
class Archive:
    manifest: Path  # the dev recordings, generated conversations, a corrupt file and a clip
    dev: list[Path]  # the dev recordings
    corrupt: Path
    clip: Path  # its outputs cannot be written: tried again, then failed
    excerpts: list[Path]  # 10 s of each dev recording, for the batch that is killed
    diarized: list[Path]  # every file that `diarize` is run on for the reference


@dataclass(frozen=True)
class Reference:
    rttms: dict[str, str]  # uri -> what `streamdiar diarize --rttm` writes for the file
    transcript: str  # what `streamdiar transcript sample.wav` writes as SRT


@pytest.fixture(scope="module")
def archive(shared_data, tmp_path_factory) -> Archive:
    folder = tmp_path_factory.mktemp("archive")
    dev = [shared_data / "dev" / f"{name}.wav" for name in ("sample", "dev00", "dev01")]
    talks = []
    for seed, voices in CONVERSATIONS:
        talks.append(folder / f"talk{seed}.wav")
        generate_conversation(talks[-1], folder / f"talk{seed}.ref.rttm", 30.0, voices, seed=seed)
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 16)
    clip = excerpt(dev[0], 0, 5, folder / "clip.wav")
    excerpts = [excerpt(path, 10, 20, folder / f"{path.stem}-10s.wav") for path in dev]
    entries = [{"path": str(dev[0]), "transcript": str(FASTER_WHISPER)}]
    entries += [{"path": str(path)} for path in [*dev[1:], *talks, corrupt, clip]]
    manifest = folder / "archive.jsonl"
    manifest.write_text("".join(json.dumps(entry) + "\n" for entry in entries), encoding="utf-8")
    return Archive(manifest, dev, corrupt, clip, excerpts, [*dev, *talks, *excerpts])


def excerpt(source: Path, start: float, end: float, target: Path) -> Path:
    samples, rate = sf.read(source, start=round(start * 16000), stop=round(end * 16000))
    sf.write(target, samples, rate)
    return target


@pytest.fixture(scope="module")
def reference(archive, run_cli, tmp_path_factory) -> Reference:
    """`diarize` over the files, and `transcript` of sample.wav, side by side."""
    folder = tmp_path_factory.mktemp("reference")
    rttm, srt = folder / "all.rttm", folder / "sample.srt"
    with ThreadPoolExecutor(2) as both:
        runs = [
            both.submit(
                run_cli, "diarize", *archive.diarized, "--rttm", rttm, *QUIET,
                extra_env=ONE_THREAD,
            ),
            both.submit(
                run_cli, "transcript", archive.dev[0], "--whisper", FASTER_WHISPER, "-o", srt,
                *QUIET, extra_env=ONE_THREAD,
            ),
        ]  # fmt: skip
        for run in runs:
            assert run.result().returncode == 0, run.result().stderr
    rttms: dict[str, str] = defaultdict(str)
    for line in rttm.read_text().splitlines(keepends=True):
        rttms[line.split()[1]] += line
    assert sorted(rttms) == sorted(path.stem for path in archive.diarized)
    return Reference(dict(rttms), srt.read_text())


@dataclass(frozen=True)
class Runner:
    flags: list[str]
    env: dict[str, str]


@pytest.fixture(scope="module")
def ray_address():
    """A Ray instance of 2 CPUs for the module; batches join it as a cluster. Without token
    authentication (a Ray started by ray.init() makes a token of its own, which batches in
    other processes would need to be given)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(*RAY_NO_TOKEN)
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=100 * 1024**2,
            logging_level="ERROR",
            log_to_driver=False,
        )
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()


@pytest.fixture(params=["local", "ray"])
def runner(request) -> Runner:
    """A batch on two local worker processes, or on two actors of the Ray."""
    if request.param == "local":
        return Runner(["--workers", "2"], {})
    address = request.getfixturevalue("ray_address")
    return Runner(["--ray", address, "--workers", "2"], dict([RAY_NO_TOKEN]))


def results(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    return [json.loads(line) for line in path.read_text().split("\n")[:-1]] if path.exists() else []


def test_batch_writes_what_diarize_writes_and_records_failures(
    archive, reference, runner, run_cli, tmp_path
):
    out = tmp_path / "out"
    (out / "clip.rttm.partial").mkdir(parents=True)  # where the clip's RTTM is to be written
    flags = ["--out", out, "--progress", "plain", "--retries", "1", *runner.flags]
    result = run_cli("batch", archive.manifest, *flags, extra_env=runner.env)
    assert result.returncode == 1, result.stderr  # files failed
    good = [path.stem for path in archive.diarized if path not in archive.excerpts]
    for uri in good:
        rttm = reference.rttms[uri]
        assert (out / f"{uri}.rttm").read_text() == rttm, uri
        lines = (out / f"{uri}.turns.jsonl").read_text().splitlines()
        events = [json.loads(line) for line in lines]
        assert len(events) == len(rttm.splitlines())
        assert all(e["event"] == "turn" and e["uri"] == uri for e in events)
    assert (out / "sample.srt").read_text() == reference.transcript
    rows = {row["uri"]: row for row in results(out)}
    assert sorted(rows) == sorted([*good, "corrupt", "clip"])
    for uri in good:
        assert rows[uri]["status"] == "done" and rows[uri]["audio_seconds"] == pytest.approx(30.0)
        speakers = {line.split()[7] for line in reference.rttms[uri].splitlines()}
        assert rows[uri]["speakers"] == len(speakers)
    corrupt = rows["corrupt"]
    assert corrupt["status"] == "failed"
    assert corrupt["error"].startswith(f"cannot decode {archive.corrupt}: ")
    assert "\n" not in corrupt["error"]
    assert f"failed corrupt.wav: {corrupt['error']}" in result.stderr
    assert rows["clip"]["status"] == "failed" and rows["clip"]["error"].endswith("(tried 2 times)")
    assert not (out / "clip.rttm").exists()
    assert "5 files done, 2 failed" in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_a_batch_killed_midway_finishes_only_the_missing_files(
    archive, reference, runner, run_cli, tmp_path
):
    out = tmp_path / "out"
    command = ["batch", *map(str, archive.excerpts), "--out", str(out), "--progress", "plain"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **runner.env}
    batch = subprocess.Popen(
        [sys.executable, "-m", "streamdiar.cli", *command, *runner.flags, *ONE_WORKER],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, which its workers join
    )
    deadline = time.monotonic() + KILL_WAIT
    while not any(row["status"] == "done" for row in results(out)):
        assert batch.poll() is None, "the batch ended before it was killed"
        assert time.monotonic() < deadline, "no file was done in time"
        time.sleep(0.1)
    batch.send_signal(signal.SIGKILL)
    batch.wait()
    _wait_until_workers_end(batch.pid, runner)

    uris = [path.stem for path in archive.excerpts]
    done = [uri for uri in uris if all((out / f"{uri}{end}").exists() for end in OUTPUTS)]
    assert 1 <= len(done) < len(uris), "killed midway"
    kept = {uri: (out / f"{uri}.rttm").stat().st_mtime_ns for uri in done}
    rows_before = len(results(out))

    result = run_cli(*command, *runner.flags, extra_env=runner.env)
    assert result.returncode == 0, result.stderr
    redone = [row["uri"] for row in results(out)[rows_before:]]
    assert sorted(redone) == sorted(set(uris) - set(done))
    assert {uri: (out / f"{uri}.rttm").stat().st_mtime_ns for uri in done} == kept
    for uri in uris:
        assert (out / f"{uri}.rttm").read_text() == reference.rttms[uri], uri
    assert not list(out.rglob("*.partial"))
    assert f"{len(done)} done before" in result.stderr.splitlines()[-1]


def _wait_until_workers_end(batch_pid: int, runner: Runner) -> None:
    """Local workers end by themselves once the batch is gone; Ray ends the actors of a
    driver that is gone, and their CPUs come back."""
    deadline = time.monotonic() + KILL_WAIT
    if "--ray" in runner.flags:
        import ray

        while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
            assert time.monotonic() < deadline, "Ray kept the actors of a killed batch"
            time.sleep(0.2)
        return
    while True:
        try:
            os.killpg(batch_pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "a worker outlived the killed batch"
        time.sleep(0.2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker in /proc")
def test_a_local_worker_killed_at_work_costs_its_file_one_attempt(archive, reference, tmp_path):
    out = tmp_path / "out"
    files = [str(path) for path in archive.excerpts]
    batch = subprocess.Popen(
        [sys.executable, "-m", "streamdiar.cli", "batch", *files, "--out", str(out),
         *ONE_WORKER, "--progress", "plain"],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert batch.stderr is not None
    for line in batch.stderr:
        if "Using device" in line:  # the worker has its models, and its first file
            break
    (worker,) = _workers_of(batch.pid)
    assert results(out) == []
    os.kill(worker, signal.SIGKILL)
    stderr = batch.stderr.read()
    assert batch.wait() == 0, stderr
    rows = results(out)
    assert sorted(row["uri"] for row in rows) == sorted(path.stem for path in archive.excerpts)
    assert all(row["status"] == "done" for row in rows), rows
    for path in archive.excerpts:
        assert (out / f"{path.stem}.rttm").read_text() == reference.rttms[path.stem]


def _workers_of(pid: int) -> list[int]:
    """The worker processes the batch process `pid` started (not multiprocessing's helpers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
