"""A filter on file descriptor 2 that keeps the lines C libraries print there (PortAudio's
checks, ALSA's error handler) off the terminal while a device is open, and lets everything
else through."""

from __future__ import annotations

import os
import re
import sys
import threading

# What PortAudio's checks and ALSA's default error handler print from C when a device fails
# ("Expression '...' failed in 'src/hostapi/alsa/pa_linux_alsa.c', line: 3665", "ALSA lib
# pcm.c:...: ..."): nothing a user can act on, and it would tear the live view apart.
LIBRARY_NOISE = re.compile(rb"Expression '.*' failed in '.*', line: \d+|ALSA lib .*")


class StderrFilter:
    """While in use, file descriptor 2 is a pipe that a thread copies to the real stderr, less
    the lines of LIBRARY_NOISE: C libraries write there directly, while Python's sys.stderr
    (streamdiar's own lines, warnings) goes through unchanged.

    One for the process, counting its users: a second redirection of fd 2 would hold a copy of
    the first pipe, which could then never end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._stderr = -1  # the real stderr, while in use
        self._pipe_in = -1
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            self._users += 1
            if self._users > 1:
                return
            pipe_out, self._pipe_in = os.pipe()
            sys.stderr.flush()
            self._stderr = os.dup(2)
            os.dup2(self._pipe_in, 2)
            self._thread = threading.Thread(
                target=self._copy, args=(pipe_out, self._stderr), name="stderr-filter", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Once its last user stops, returns when all written before has been copied (or after
        a second, should a child process hold the pipe too: the thread then copies on)."""
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._thread is None:
                return
            sys.stderr.flush()
            os.dup2(self._stderr, 2)
            os.close(self._pipe_in)  # the thread copies to the pipe's end, then closes _stderr
            self._thread.join(timeout=1.0)
            self._thread = None

    @staticmethod
    def _copy(pipe_out: int, stderr: int) -> None:
        try:
            with open(pipe_out, "rb", buffering=0) as pipe:
                pending = b""
                while chunk := pipe.read(65536):
                    *lines, pending = (pending + chunk).split(b"\n")
                    kept = b"".join(line + b"\n" for line in lines if not _noise(line))
                    _write_all(stderr, kept)
                if not _noise(pending):
                    _write_all(stderr, pending)
        finally:
            os.close(stderr)


STDERR_FILTER = StderrFilter()


def _noise(line: bytes) -> bool:
    return LIBRARY_NOISE.fullmatch(line) is not None


def _write_all(fd: int, data: bytes) -> None:
    """Writes `data` to `fd`, giving up quietly when it is closed: the pipe that fills it must
    still be drained, or its writers would block."""
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass
