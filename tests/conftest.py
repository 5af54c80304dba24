import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from hypothesis import settings
from threadpoolctl import threadpool_limits

import streamdiar
from streamdiar import Diarizer
from streamdiar.core.embedded import EmbeddedBackend
from streamdiar.core.types import LocalSpeakers

if TYPE_CHECKING:
    from streamdiar.core.campplus_backend import CampplusBackend

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SESSION_CACHE = os.environ.get("STREAMDIAR_CACHE")  # as the suite started
PROJECT_ROOT = Path(streamdiar.__file__).resolve().parents[1]

RunCli = Callable[..., subprocess.CompletedProcess]

# Hypothesis profiles. "ci", the default (`make test`, CI): the same examples on every run, from
# a fixed seed and no example database, so that the suite passes or fails the same way on every
# run and machine; no deadline (a busy machine is slow, not wrong); a failure prints the blob that
# @reproduce_failure needs. "dev", chosen with HYPOTHESIS_PROFILE=dev: new random examples on
# each run, and failures found are kept in .hypothesis/ and tried first next time.
# Per-test @settings inherit what they do not set from the loaded profile (loaded here, before
# the test modules are imported).
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` beside the repository: data too large or too foreign to commit."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


@pytest.fixture
def session_cache(monkeypatch) -> None:
    """The cache the whole suite shares, for a test in a module that gives each test a private
    one: CAM++ quantized to int8 for files (`int8`) is made there once, not in each test
    (about a minute each)."""
    if SESSION_CACHE is None:
        monkeypatch.delenv("STREAMDIAR_CACHE", raising=False)
    else:
        monkeypatch.setenv("STREAMDIAR_CACHE", SESSION_CACHE)


@pytest.fixture(scope="session")
def campplus_backend() -> Callable[[str], "CampplusBackend"]:
    """Builds the default backend on the CPU with a runtime running its models there; each
    call loads its own, which a test module may change."""
    from streamdiar.core.campplus_backend import CampplusBackend

    def on_cpu(runtime: str) -> CampplusBackend:
        backend = CampplusBackend.packaged()
        backend.runtime = runtime
        return backend.to(torch.device("cpu"))

    return on_cpu


@pytest.fixture(scope="session")
def run_cli() -> RunCli:
    """Runs `streamdiar ARGS` in a subprocess, as a user would, with the streamdiar under test
    whatever the working directory."""
    paths = [str(PROJECT_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}

    def run(
        *args: str | Path, cwd: Path | None = None, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "streamdiar.cli", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**env, **(extra_env or {})},
        )

    return run


TORCH_THREADS = torch.get_num_threads()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Importing silero_vad (as test_embedded does) sets torch to one thread for the whole
    process, at collection; the tests run with the threads a program has."""
    torch.set_num_threads(TORCH_THREADS)


@pytest.fixture(scope="module")
def one_blas_thread():
    """The clustering's small matrices: BLAS threads only cost time, a lot on a busy machine
    (the CLI limits them the same way)."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def backend() -> EmbeddedBackend:
    """The default backend's models, loaded once per test module."""
    return EmbeddedBackend()


@pytest.fixture(scope="session")
def default_diarizer() -> Diarizer:
    """`Diarizer()` as a program makes it: the default backend, loaded once for the session."""
    return Diarizer()


@pytest.fixture(scope="session")
def live_diarizer() -> Diarizer:
    """The default backend with one window per batch: files diarized as live audio is."""
    return Diarizer(batch_size=1)


def _speaker_cosines(first: list[LocalSpeakers], second: list[LocalSpeakers]) -> np.ndarray:
    """The cosine between the two vectors of each local speaker active in both results of the
    same windows (vectors,)."""
    return np.array(
        [
            a.embeddings[k] @ b.embeddings[k]
            / np.linalg.norm(a.embeddings[k])
            / np.linalg.norm(b.embeddings[k])
            for a, b in zip(first, second, strict=True)
            for k in np.flatnonzero(a.active & b.active)
        ]
    )


@pytest.fixture(scope="session")
def speaker_cosines() -> Callable[[list[LocalSpeakers], list[LocalSpeakers]], np.ndarray]:
    """How close two runs' vectors of the same windows are (`_speaker_cosines`)."""
    return _speaker_cosines


def _same_segmentation_cosines(
    first: list[LocalSpeakers], second: list[LocalSpeakers]
) -> np.ndarray:
    """`_speaker_cosines` of two runs that must agree on the activity of each window's local
    speakers, frame by frame (the same segmentation, other speaker vectors)."""
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.activity, b.activity)
        np.testing.assert_array_equal(a.active, b.active)
    return _speaker_cosines(first, second)


@pytest.fixture(scope="session")
def same_segmentation_cosines() -> Callable[
    [list[LocalSpeakers], list[LocalSpeakers]], np.ndarray
]:
    """How close two runs' vectors are, where their segmentations must be the same
    (`_same_segmentation_cosines`)."""
    return _same_segmentation_cosines
