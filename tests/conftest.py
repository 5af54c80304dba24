import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

import streamdiar
from streamdiar.core.embedded import EmbeddedBackend

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PROJECT_ROOT = Path(streamdiar.__file__).resolve().parents[1]

RunCli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` beside the repository: data too large or too foreign to commit."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


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
