"""Who speaks now on the microphone, with streamdiar's Python API.

sounddevice's callback runs on PortAudio's thread and only copies each block into a queue;
this program's main thread takes the blocks from the queue, pushes them into a streamdiar
Session and prints each turn once it is final (about two seconds behind the speech). Ctrl-C
stops: the audio heard by then is diarized and the last turns are printed.

    python samples/microphone.py                    # the default input device
    python samples/microphone.py --input-device USB # a device by (part of) its name or index
    python samples/microphone.py --file talk.wav    # a file through the same callback, no device

Needs streamdiar installed (sounddevice comes with it) and, on Linux, `libportaudio2`.
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from streamdiar import Diarizer, StreamdiarError, Turn

SAMPLE_RATE = 16_000
BLOCK_SECONDS = 0.02

# sounddevice's InputStream callback: (indata (frames, channels) float32, frames, time, status)
Callback = Callable[[np.ndarray, int, Any, Any], None]


class FileInput:
    """A file played through the callback as a microphone's blocks, as fast as it is read;
    `finished` is set at its end."""

    def __init__(self, path: Path, callback: Callback, finished: threading.Event) -> None:
        info = sf.info(str(path))
        self.samplerate, self.channels = info.samplerate, info.channels
        self._path, self._callback, self._finished = path, callback, finished
        self._thread = threading.Thread(target=self._play, daemon=True)

    def __enter__(self) -> FileInput:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._thread.join()

    def _play(self) -> None:
        frames = round(BLOCK_SECONDS * self.samplerate)
        for block in sf.blocks(str(self._path), frames, dtype="float32", always_2d=True):
            self._callback(block, len(block), None, None)
        self._finished.set()


def show(turns: list[Turn]) -> None:
    for turn in turns:
        print(f"{turn.start:8.3f} {turn.end:8.3f}  {turn.speaker}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--input-device",
        type=lambda name: int(name) if name.isdigit() else name,
        help="an input device's index or (part of) its name",
    )
    source.add_argument("--file", type=Path, help="play this file instead of a microphone")
    parser.add_argument("--device", help="where the models run: auto, gpu, cuda, mps or cpu")
    args = parser.parse_args()

    blocks: queue.Queue[np.ndarray] = queue.Queue()
    stop = threading.Event()  # Ctrl-C, or the end of --file

    def callback(indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        blocks.put(indata.copy())  # the only work on the audio thread

    try:
        diarizer = Diarizer(device=args.device)
        if args.file is not None:
            stream = FileInput(args.file, callback, stop)
            session = diarizer.session(stream.samplerate, stream.channels)
        else:
            import sounddevice

            stream = sounddevice.InputStream(
                samplerate=SAMPLE_RATE,
                channels=1,
                dtype="float32",
                blocksize=round(BLOCK_SECONDS * SAMPLE_RATE),
                device=args.input_device,
                callback=callback,
            )
            session = diarizer.session(SAMPLE_RATE)
        signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
        with stream:  # started here, stopped and closed on leaving
            print(f"listening, models on {diarizer.device}; Ctrl-C stops", file=sys.stderr)
            while not stop.is_set():
                try:
                    show(session.push(blocks.get(timeout=0.1)))
                except queue.Empty:
                    pass
        while not blocks.empty():  # what was heard before the stream stopped
            show(session.push(blocks.get_nowait()))
        show(session.close())
    except StreamdiarError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
