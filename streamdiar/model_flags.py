"""The command-line flags that say where the pyannote backend's models come from."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamdiar.core.pyannote_models import ModelSource


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--hf-token",
        metavar="TOKEN",
        help="Hugging Face token for --backend pyannote (default: $HF_TOKEN, else the "
        "`hf auth login` cache)",
    )
    add("--segmentation", type=Path, metavar="PATH", help="local segmentation-3.0 checkpoint")
    add("--embedding", type=Path, metavar="PATH", help="local WeSpeaker ResNet34 checkpoint")
    add(
        "--random-weights",
        action="store_true",
        help="untrained pyannote models, for tests and speed measurements (labels mean nothing)",
    )


def model_source(args: argparse.Namespace) -> ModelSource:
    return ModelSource(args.hf_token, args.segmentation, args.embedding, args.random_weights)
