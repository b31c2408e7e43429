"""
Saved-model files: SHA-256 checksums of the weights (files and tensors), the rule that tells a folder path from a
Hub id, and the one-line errors naming the damaged or refused file of a folder that fails to load.
"""

import contextlib
import hashlib
import json
import os
import pickle

import torch
from safetensors import SafetensorError, safe_open

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


def _files(folder: str, suffix: str) -> list[str]:
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(suffix)) if os.path.isdir(folder) else []


def _unreadable_json(folder: str) -> str | None:
    """The first JSON file of `folder` that does not parse, with why, or None."""
    for path in _files(folder, ".json"):
        try:
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
        except (OSError, ValueError) as error:
            return f"{path} is not valid JSON ({error}): the file is truncated or damaged"
    return None


def _unreadable_safetensors(folder: str) -> str | None:
    """The first weights file of `folder` whose safetensors header cannot be read, with why, or None."""
    for path in _files(folder, ".safetensors"):
        try:
            with safe_open(path, "pt"):
                pass
        except (SafetensorError, OSError) as error:
            return f"{path} cannot be read ({error}): the file is truncated or damaged"
    return None


def _mismatched_tensor(model_class, folder: str) -> str | None:
    """The first tensor of the folder's weights whose shape differs from what its config builds, with both shapes."""
    with torch.device("meta"):
        expected = model_class(model_class.config_class.from_pretrained(folder)).state_dict()
    for path in _files(folder, ".safetensors"):
        with safe_open(path, "pt") as weights:
            for name in weights.keys():
                saved = tuple(weights.get_slice(name).get_shape())
                if name in expected and tuple(expected[name].shape) != saved:
                    return (
                        f"{path}: the tensor {name} has shape {list(saved)}, but config.json builds "
                        f"{list(expected[name].shape)}: the weights do not belong to this config"
                    )
    return None


REDO = "copy the folder again, or save the model again"


@contextlib.contextmanager
def saved_file_errors(folder: str, model_class=None):
    """
    While a saved folder loads (a model of `model_class`, or a processor without it): a truncated JSON file or
    weights file, a pickled weights file that is not plain tensors (`pytorch_model.bin`: unpickling it could run
    code), or a tensor of the wrong shape becomes a `CheckpointError` naming the file (and the tensor), in one line.
    """
    try:
        yield
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{_unreadable_json(folder) or f'{folder}: {error}'}; {REDO}") from None
    except SafetensorError as error:
        raise CheckpointError(f"{_unreadable_safetensors(folder) or f'{folder}: {error}'}; {REDO}") from None
    except pickle.UnpicklingError:
        pickles = ", ".join(_files(folder, ".bin")) or folder
        raise CheckpointError(
            f"{pickles}: refused, a pickle holding more than tensors (loading it could run code hidden in it); load "
            "a model saved as model.safetensors, e.g. re-save a copy you trust with save_pretrained"
        ) from None
    except RuntimeError as error:
        mismatch = model_class and "ignore_mismatched_sizes" in str(error) and _mismatched_tensor(model_class, folder)
        if not mismatch:
            raise
        raise CheckpointError(mismatch) from None


__all__ = [
    "CHECKSUM_FILE", "PARTIAL_CHECKPOINT_FILE", "could_be_hub_id", "require_folder_or_hub_id", "update_with_tensors",
    "write_checksums", "verify_checksums", "saved_file_errors",
]
