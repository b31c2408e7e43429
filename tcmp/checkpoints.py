"""Saved-model files: SHA-256 checksums of the weights (files and tensors), and the rule that tells a folder path
from a Hub id."""

import hashlib
import json
import os

import torch

from .errors import CheckpointError


CHECKSUM_FILE = "tcmp_checksums.json"
PARTIAL_CHECKPOINT_FILE = "tcmp_frozen_weights_left_out.json"
"""In an intermediate Trainer checkpoint saved without the weights that do not train (they come from the run's
starting model): their names and a SHA-256 of their values."""


def could_be_hub_id(name: str) -> bool:
    """Whether `name` has the shape of a Hub repository id (`bert-base-uncased`, `org/model`) rather than a path."""
    return not name.startswith(("/", ".", "~")) and name.count("/") <= 1 and not os.path.exists(name)


def require_folder_or_hub_id(name: str) -> None:
    """A path that names no folder is refused here, naming it (transformers would call it a bad Hub repo id)."""
    if not os.path.isdir(os.path.expanduser(name)) and not could_be_hub_id(name):
        raise FileNotFoundError(f"{name}: no such folder")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def update_with_tensors(digest, tensors: dict[str, torch.Tensor]):
    """Feed `digest` (a `hashlib` object) every tensor of `tensors`, sorted by name: its name, dtype and bytes."""
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest


def write_checksums(folder: str):
    """Record the SHA-256 of every weights file of a saved model, so that a damaged copy is refused at load time."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))
    checksums = {name: _sha256(os.path.join(folder, name)) for name in names}
    with open(os.path.join(folder, CHECKSUM_FILE), "w") as handle:
        json.dump(checksums, handle, indent=2)


def verify_checksums(folder: str):
    """Raise `CheckpointError` naming the first weights file whose bytes differ from what was saved."""
    path = os.path.join(folder, CHECKSUM_FILE)
    if not os.path.isfile(path):
        return
    with open(path) as handle:
        checksums = json.load(handle)
    for name, expected in checksums.items():
        weights = os.path.join(folder, name)
        if not os.path.isfile(weights):
            raise CheckpointError(f"{weights} is missing (listed in {path})")
        if _sha256(weights) != expected:
            raise CheckpointError(f"{weights} is corrupted or truncated: its SHA-256 differs from the saved one")


__all__ = [
    "CHECKSUM_FILE", "PARTIAL_CHECKPOINT_FILE", "could_be_hub_id", "require_folder_or_hub_id", "update_with_tensors",
    "write_checksums", "verify_checksums",
]
