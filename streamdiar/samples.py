"""Audio that ships inside installed packages, for demos: `python -m streamdiar.samples
sample-wav` prints the path of the sample in the pyannote.audio wheel."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path


def sample_wav() -> Path:
    """The 30 s two-speaker phone call that ships with pyannote.audio."""
    # Found through the pyannote namespace package: importing pyannote.audio takes seconds.
    return Path(str(resources.files("pyannote") / "audio" / "sample" / "sample.wav"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamdiar.samples", description=__doc__)
    parser.add_argument("sample", choices=["sample-wav"])
    parser.parse_args(argv)
    path = sample_wav()
    if not path.is_file():
        message = f"streamdiar: error: {path} is missing: is pyannote.audio installed?"
        print(message, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
