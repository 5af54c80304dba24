"""SIGTERM handled as Ctrl-C, for commands that close their outputs whole on an interrupt."""

from __future__ import annotations

import signal
from typing import NoReturn


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """From now on SIGTERM stops the run the way Ctrl-C does: inputs closed, outputs whole,
    exit 130."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
