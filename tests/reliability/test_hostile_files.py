"""
A saved folder, a manifest or an input that was tampered with, truncated or mixed up is refused in one line naming
the file (and the field, tensor or value), never with a torch traceback or a silent NaN.
"""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoProcessor

import run_finetune
from tcmp import CheckpointError, TCMPConfig, TCMPForEmotionPreRecognition, TCMPProcessor
from tcmp.checkpoints import write_checksums
from tcmp.data import DataError, build_umd
from tcmp.errors import ArgumentsError, AudioLoadError
from tcmp.streaming import StreamingPreRecognizer

from ..scripts.conftest import tiny_flags


@pytest.fixture
def saved(config, processor, tmp_path):
    """A tiny model and its processor saved together."""
    folder = tmp_path / "model"
    TCMPForEmotionPreRecognition(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def rewrite_weights(folder, change):
    """Apply `change` to the saved state dict, then regenerate the checksums (a tamperer would)."""
    weights = load_file(folder / "model.safetensors")
    change(weights)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    write_checksums(str(folder))


def set_config_value(folder, field, value):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config[field] = value
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("value", [-1, 0, 10**9, "768"])
def test_bad_hidden_size_in_config_json_is_one_line_naming_file_field_and_value(saved, value):
    path = set_config_value(saved, "hidden_size", value)
    for load in (TCMPForEmotionPreRecognition.from_pretrained, TCMPConfig.from_pretrained, AutoConfig.from_pretrained):
        with pytest.raises(ValueError) as refused:
            load(saved)
        message = str(refused.value)
        assert message.startswith(f"{path}: ") and "hidden_size" in message and repr(value) in message
        assert "\n" not in message


def test_bad_config_value_reaches_the_script_as_one_line(saved, tmp_path):
    path = set_config_value(saved, "hidden_size", "wide")
    with pytest.raises(ArgumentsError, match=f"{path}: Field 'hidden_size' expected int, got str \\(value: 'wide'\\)"):
        run_finetune.main(tiny_flags(tmp_path / "out", "--model_name_or_path", str(saved), "--max_steps", "1"))


def test_config_values_built_in_code_are_checked(config):
    for field, value in (("hidden_size", 0), ("dropout", 1.5), ("class_weights", [1.0, float("nan")])):
        with pytest.raises(ValueError, match=f"TCMPConfig.{field} must be"):
            TCMPConfig(**{**config.to_dict(), field: value})


def test_nan_weights_are_refused_at_load_naming_the_tensor(saved):
    rewrite_weights(saved, lambda w: w["classifier.0.bias"].fill_(float("nan")))
    with pytest.raises(CheckpointError, match=f"{saved}: the weights of classifier.0.bias hold NaN or infinite"):
        TCMPForEmotionPreRecognition.from_pretrained(saved)
    with pytest.raises(CheckpointError, match="classifier.0.bias"):
        StreamingPreRecognizer.from_pretrained(str(saved))


def test_infinite_weights_are_refused_too(saved):
    rewrite_weights(saved, lambda w: w["classifier.0.weight"].view(-1)[3:5].fill_(float("inf")))
    with pytest.raises(CheckpointError, match=r"classifier.0.weight hold NaN or infinite values \(2 of"):
        TCMPForEmotionPreRecognition.from_pretrained(saved)


def test_token_ids_outside_the_vocabulary_name_the_id_and_the_size(config, make_batch):
    model = TCMPForEmotionPreRecognition(config).eval()
    batch = make_batch([[{"text": "hello there", "audio": np.zeros(3200, np.float32), "sampling_rate": 16000}]])
    vocab = model.base_model.text_model.get_input_embeddings().num_embeddings
    for bad in (vocab, vocab + 1000, -1):
        ids = batch["input_ids"].clone()
        ids[0, 1] = bad
        with pytest.raises(ValueError, match=f"token id {bad}, outside the text encoder's vocabulary of {vocab} tokens"):
            model(**{**batch, "input_ids": ids})


def test_truncated_tokenizer_json_names_the_file(saved):
    path = saved / "tokenizer.json"
    path.write_text(path.read_text()[:300])
    for load in (TCMPProcessor.from_pretrained, AutoProcessor.from_pretrained):
        with pytest.raises(CheckpointError, match=f"^{path} is not valid JSON .*truncated or damaged"):
            load(saved)


class NotATensor:
    """Any object that is not a tensor: torch's weights-only unpickler refuses its class."""


def test_pickled_pytorch_model_bin_is_refused_in_one_line(saved, tmp_path):
    (saved / "model.safetensors").unlink()
    (saved / "tcmp_checksums.json").unlink()
    torch.save({"classifier.0.bias": torch.zeros(3), "extra": NotATensor()}, saved / "pytorch_model.bin")
    with pytest.raises(CheckpointError) as refused:
        TCMPForEmotionPreRecognition.from_pretrained(saved)
    message = str(refused.value)
    assert message.startswith(f"{saved / 'pytorch_model.bin'}: refused") and "could run code" in message
    assert "model.safetensors" in message and "\n" not in message


def test_truncated_safetensors_without_checksums_names_the_file(saved):
    (saved / "tcmp_checksums.json").unlink()
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=f"^{weights} cannot be read .*truncated or damaged"):
        TCMPForEmotionPreRecognition.from_pretrained(saved)


def test_wrong_shape_tensor_names_the_file_and_the_tensor(saved):
    rewrite_weights(saved, lambda w: w.update({"classifier.0.bias": torch.zeros(5, 7)}))
    with pytest.raises(CheckpointError) as refused:
        TCMPForEmotionPreRecognition.from_pretrained(saved)
    assert str(refused.value).startswith(f"{saved / 'model.safetensors'}: the tensor classifier.0.bias has shape [5, 7]")


def test_a_folder_given_as_audio_is_named_as_a_folder(processor, tmp_path):
    with pytest.raises(AudioLoadError, match=f"audio file '{tmp_path}' is a folder, not an audio file"):
        processor([[{"text": "hello", "audio": str(tmp_path)}]])
    manifest = tmp_path / "umd.jsonl"
    manifest.write_text(json.dumps({"utterances": [{"text": "hi", "audio": str(tmp_path)}]}) + "\n")
    with pytest.raises(AudioLoadError, match="line 1, utterance 0: .*is a folder, not an audio file"):
        build_umd(str(manifest), cache_dir=str(tmp_path / "cache"))


def test_manifest_line_nested_too_deep_names_file_and_line(tmp_path):
    manifest = tmp_path / "umd.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    manifest.write_text(json.dumps({"utterances": [{"text": "hi"}]}) + "\n" + deep + "\n")
    with pytest.raises(DataError, match=f"^{manifest}, line 2: JSON nested deeper than Python can read"):
        build_umd(str(manifest), cache_dir=str(tmp_path / "cache"))
