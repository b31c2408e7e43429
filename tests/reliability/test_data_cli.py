"""`python -m tcmp.data build <kind>`: every source kind builds from the command line and saves a loadable dataset."""

import json
import os
import subprocess
import sys

import joblib
import pytest
from datasets import load_from_disk

from tcmp.data.__main__ import main
from tests.data.conftest import write_iemocap, write_manifest, write_meld_csv
from tests.data.test_other_sources import release_dialogues

from ..scripts.conftest import REPO, TINY_DEMO


def build(tmp_path, *argv) -> str:
    output = str(tmp_path / "built")
    assert main(["build", *map(str, argv), "--output", output, "--cache-dir", str(tmp_path / "cache")]) == 0
    return output


def test_build_demo(tmp_path):
    output = build(tmp_path, "demo", "--options", json.dumps(TINY_DEMO))
    assert set(load_from_disk(os.path.join(output, "pretraining"))) == {"train", "validation", "test"}
    samples = load_from_disk(os.path.join(output, "prerecognition"))
    assert len(samples["train"]) > 0 and samples["train"].features["label"].names


def test_build_pmeld(tmp_path):
    (tmp_path / "meld").mkdir()
    write_meld_csv(tmp_path / "meld" / "train_sent_emo.csv")
    samples = load_from_disk(build(tmp_path, "pmeld", tmp_path / "meld", "--no-require-speaker-change"))
    assert samples["train"]["sample_id"] and "label" in samples["train"].column_names


def test_build_piem(tmp_path):
    root = write_iemocap(tmp_path / "iem")
    options = '{"train_sessions": [1], "test_sessions": [2], "dev_sessions": null, "dev_fraction": 0.5}'
    samples = load_from_disk(build(tmp_path, "piem", root, "--options", options))
    assert set(samples) == {"train", "validation", "test"} and len(samples["test"]) > 0


def test_build_umd_from_two_manifests(tmp_path):
    dialogue = {"dialogue_id": "d0", "utterances": [{"text": "hi", "speaker": "A"}, {"text": "yo", "speaker": "B"}]}
    train = write_manifest(tmp_path / "a", [dialogue])
    dev = tmp_path / "a" / "dev.jsonl"
    dev.write_text(train.read_text())
    dialogues = load_from_disk(build(tmp_path, "umd", train, dev))
    assert set(dialogues) == {"train", "validation"} and dialogues["validation"][0]["text"] == ["hi", "yo"]


@pytest.fixture
def release_file(tmp_path):
    path = tmp_path / "pmeld_train.joblib"
    joblib.dump(release_dialogues(), path)
    return path


def test_build_release(release_file, tmp_path):
    samples = load_from_disk(build(tmp_path, "release", release_file, "--allow-pickle", "--kind-of-release", "pmeld"))
    assert samples["train"][0]["text"] == ["hi", "hey"]


def test_build_release_as_documented_from_a_shell(release_file, tmp_path):
    command = [sys.executable, "-m", "tcmp.data", "build", "release", str(release_file), "--allow-pickle",
               "--output", str(tmp_path / "out")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": REPO, "HF_DATASETS_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert load_from_disk(str(tmp_path / "out"))["train"][0]["text"] == ["hi", "hey"]
    refused = subprocess.run(command[:-3] + ["--output", str(tmp_path / "o2")], cwd=REPO, capture_output=True,
                             text=True, timeout=120, env={**os.environ, "PYTHONPATH": REPO})
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "is a joblib/pickle file" in refused.stderr.splitlines()[-1]
