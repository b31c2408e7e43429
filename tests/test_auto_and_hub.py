"""Auto classes, save/load round trips, the Hub folder and loading without tcmp installed."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
)

from tcmp import TCMPConfig, TCMPForEmotionPreRecognition, TCMPForPreTraining, TCMPModel
from tcmp.presets import tiny_audio_config, tiny_text_config

from .conftest import random_dialogues


HEADS = [
    (TCMPModel, AutoModel, "forthcoming_embeds"),
    (TCMPForPreTraining, AutoModelForPreTraining, "prediction_scores"),
    (TCMPForEmotionPreRecognition, AutoModelForSequenceClassification, "logits"),
]


def run_without_tcmp(script: str, folder) -> None:
    """Run `script` in a fresh interpreter in `folder`, where `tcmp` is not importable; it must print OK."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def pipeline_predicts_without_tcmp(folder, dialogue, expected, tmp_path, tasks=(None,)) -> None:
    """`pipeline(task, model=folder, trust_remote_code=True)`, for each of `tasks` (None: inferred), in a process
    where `import tcmp` fails, runs the folder's own pipeline code and gives `expected` on `dialogue`."""
    torch.save({"dialogue": dialogue, "expected": expected}, tmp_path / "case.pt")
    script = f"""
import sys
sys.modules["tcmp"] = None
import torch
from transformers import pipeline
case = torch.load({str(tmp_path / "case.pt")!r}, weights_only=False)
for task in {tuple(tasks)!r}:
    classifier = pipeline(task, model={str(folder)!r}, trust_remote_code=True)
    assert type(classifier).__module__.startswith("transformers_modules"), type(classifier).__module__
    got = classifier(case["dialogue"])
    assert [p["label"] for p in got] == [p["label"] for p in case["expected"]], (got, case["expected"])
    assert all(abs(a["score"] - b["score"]) < 1e-6 for a, b in zip(got, case["expected"])), (got, case["expected"])
print("OK")
"""
    run_without_tcmp(script, tmp_path)


def test_auto_config_knows_tcmp(config, tmp_path):
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, TCMPConfig)
    assert loaded.text_config.hidden_size == config.text_config.hidden_size
    assert list(loaded.audio_config.conv_stride) == list(config.audio_config.conv_stride)
    assert loaded.to_json_string() == config.to_json_string()


@pytest.mark.parametrize("model_class,auto_class,field", HEADS)
def test_save_load_round_trip_gives_equal_outputs(model_class, auto_class, field, config, make_batch, tmp_path):
    model = model_class(config).eval()
    batch = make_batch(random_dialogues(0, [4, 3]))
    expected = getattr(model(**batch), field)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    loaded = auto_class.from_pretrained(tmp_path).eval()
    assert type(loaded) is model_class
    assert torch.allclose(getattr(loaded(**batch), field), expected)


def test_hub_folder_is_complete_and_loads_without_tcmp(config, processor, make_batch, tmp_path):
    """Everything push_to_hub would upload, copied alone, loads in a process where `import tcmp` fails."""
    model = TCMPForEmotionPreRecognition(config).eval()
    batch = make_batch(random_dialogues(1, [3, 2]))
    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    processor.save_pretrained(saved)
    expected_files = {
        "config.json",
        "model.safetensors",
        "configuration_tcmp.py",
        "modeling_tcmp.py",
        "processing_tcmp.py",
        "processor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert expected_files <= set(os.listdir(saved))
    hub_copy = tmp_path / "hub_copy"
    shutil.copytree(saved, hub_copy)
    torch.save({"batch": dict(batch), "logits": model(**batch).logits}, tmp_path / "expected.pt")
    script = f"""
import sys
sys.modules["tcmp"] = None  # make `import tcmp` fail: only the folder's own code may be used
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoProcessor
try:
    import tcmp
    raise SystemExit("tcmp is importable")
except ImportError:
    pass
expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
model = AutoModelForSequenceClassification.from_pretrained({str(hub_copy)!r}, trust_remote_code=True).eval()
assert type(model).__name__ == "TCMPForEmotionPreRecognition", type(model)
assert model.__module__.startswith("transformers_modules"), model.__module__
assert torch.allclose(model(**expected["batch"]).logits, expected["logits"], atol=1e-6)
base = AutoModel.from_pretrained({str(hub_copy)!r}, trust_remote_code=True)
assert type(base).__name__ == "TCMPModel"
processor = AutoProcessor.from_pretrained({str(hub_copy)!r}, trust_remote_code=True)
assert type(processor).__name__ == "TCMPProcessor"
batch = processor([[{{"text": "hello how are you", "audio": torch.randn(4000).numpy(), "sampling_rate": 16000}}]])
assert torch.isfinite(model(**batch).logits).all()
print("OK")
"""
    run_without_tcmp(script, tmp_path)


def test_a_folder_loaded_without_scipy_and_soundfile_says_they_are_needed(config, processor, tmp_path):
    """Transformers' check of a remote module's imports names the audio packages, where they are not installed (the
    model alone, which needs neither, still loads)."""
    TCMPForEmotionPreRecognition(config).save_pretrained(tmp_path / "saved")
    processor.save_pretrained(tmp_path / "saved")
    script = f"""
import sys
sys.modules["tcmp"] = None
from transformers import AutoModelForSequenceClassification, AutoProcessor
for name in [name for name in sys.modules if name.split(".")[0] in ("scipy", "soundfile")]:
    del sys.modules[name]  # as in an environment without them: imported again, they are not found


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("scipy", "soundfile"):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)


sys.meta_path.insert(0, NotInstalled())
AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "saved")!r}, trust_remote_code=True)
try:
    AutoProcessor.from_pretrained({str(tmp_path / "saved")!r}, trust_remote_code=True)
    raise SystemExit("the processor loaded without scipy and soundfile")
except ImportError as error:
    assert "requires the following packages that were not found in your environment: scipy, soundfile" in str(error), error
print("OK")
"""
    run_without_tcmp(script, tmp_path)


def test_from_text_audio_pretrained_loads_both_local_encoders(tokenizer, make_batch, tmp_path):
    text_encoder = AutoModel.from_config(tiny_text_config(len(tokenizer)))
    audio_encoder = AutoModel.from_config(tiny_audio_config())
    text_encoder.save_pretrained(tmp_path / "text")
    audio_encoder.save_pretrained(tmp_path / "audio")
    model = TCMPForPreTraining.from_text_audio_pretrained(
        str(tmp_path / "text"), str(tmp_path / "audio"), hidden_size=16, num_negatives=3
    )
    assert model.config.hidden_size == 16 and model.config.num_negatives == 3
    loaded_text = model.tcmp.text_model.embeddings.word_embeddings.weight
    assert torch.equal(loaded_text, text_encoder.embeddings.word_embeddings.weight)
    loaded_conv = model.tcmp.audio_model.feature_extractor.conv_layers[0].conv.weight
    assert torch.equal(loaded_conv, audio_encoder.feature_extractor.conv_layers[0].conv.weight)
    assert model.tcmp.text_model.pooler is None
    out = model(**make_batch(random_dialogues(2, [4, 4])))
    assert torch.isfinite(out.loss)
    text_only = TCMPForEmotionPreRecognition.from_text_audio_pretrained(str(tmp_path / "text"), num_labels=3)
    assert text_only.config.audio_config is None and text_only.tcmp.audio_model is None


def test_from_text_audio_pretrained_needs_a_path():
    with pytest.raises(ValueError, match="needs a text_model_path, an audio_model_path or both"):
        TCMPForPreTraining.from_text_audio_pretrained()


def test_a_missing_folder_is_named_not_taken_for_a_hub_id(tmp_path):
    from tcmp import StreamingPreRecognizer

    missing = str(tmp_path / "no_such_model")
    with pytest.raises(FileNotFoundError, match=f"^{missing}: no such folder$"):
        TCMPForEmotionPreRecognition.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match=f"^{missing}: no such folder$"):
        StreamingPreRecognizer.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match="^./no_such_hubert: no such folder$"):
        TCMPForPreTraining.from_text_audio_pretrained(None, "./no_such_hubert")


def test_saved_pipeline_runs_without_tcmp_with_the_same_predictions(config, processor, tmp_path):
    """A pipeline's `save_pretrained` folder: `pipeline(model=folder, trust_remote_code=True)`, task given or
    inferred, where `import tcmp` fails, predicts as the pipeline of the installed tcmp."""
    from transformers import pipeline

    TCMPForEmotionPreRecognition(config).eval().save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    classifier = pipeline("emotion-pre-recognition", model=str(tmp_path / "model"))
    dialogue = [{k: u[k] for k in ("text", "audio", "sampling_rate")} for u in random_dialogues(4, [3])[0]]
    expected = classifier(dialogue)
    saved = tmp_path / "saved"
    classifier.save_pretrained(saved)
    assert {"pipeline_tcmp.py", "modeling_tcmp.py", "processor_config.json"} <= set(os.listdir(saved))
    pipeline_predicts_without_tcmp(saved, dialogue, expected, tmp_path, tasks=("emotion-pre-recognition", None))
