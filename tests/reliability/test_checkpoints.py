"""Saved models: safetensors only, damaged files refused with the file's name, nothing half-loaded."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification

from tcmp import CheckpointError, TCMPForEmotionPreRecognition


@pytest.fixture
def saved(config, tmp_path):
    TCMPForEmotionPreRecognition(config).save_pretrained(tmp_path)
    return tmp_path


def test_weights_are_safetensors_with_checksums(saved):
    names = set(os.listdir(saved))
    assert "model.safetensors" in names and "tcmp_checksums.json" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))]


def test_truncated_weights_are_refused_naming_the_file(saved):
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=str(weights)):
        AutoModelForSequenceClassification.from_pretrained(saved)


def test_flipped_bytes_inside_the_tensors_are_refused(saved):
    weights = saved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100:-50] = bytes(50)
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        TCMPForEmotionPreRecognition.from_pretrained(saved)


def test_unreadable_header_without_checksums_still_names_the_folder(saved):
    (saved / "tcmp_checksums.json").unlink()
    weights = saved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[10:40] = b"x" * 30
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=str(saved)):
        TCMPForEmotionPreRecognition.from_pretrained(saved)


def test_no_unsafe_torch_load_in_the_package():
    """Every torch.load in the project's code passes weights_only=True (pickles can run code)."""
    root = Path(__file__).resolve().parents[2]
    files = [p for p in root.rglob("*.py") if ".venv" not in p.parts and "tests" not in p.parts]
    offenders = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path}:{number}")
    assert not offenders, offenders


def test_loading_with_tcmp_installed_needs_no_remote_code(saved):
    script = (
        "import tcmp\nfrom transformers import AutoModelForSequenceClassification\n"
        f"m = AutoModelForSequenceClassification.from_pretrained({str(saved)!r}, trust_remote_code=False)\n"
        "assert type(m).__module__ == 'tcmp.modeling_tcmp', type(m).__module__\nprint('OK')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-2000:]
