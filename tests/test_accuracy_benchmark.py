"""benchmarks/accuracy.py's baselines on tiny generated corpora: persistence, the P-DD F1s, summary.json (no MiniLM)."""

import importlib.util
import json
import os

import numpy as np
import pytest
import yaml
from datasets import ClassLabel, Dataset, Features, List, Value

from tests.data.test_dailydialog import write_release


PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "accuracy.py")
spec = importlib.util.spec_from_file_location("accuracy_benchmark", PATH)
accuracy = importlib.util.module_from_spec(spec)
spec.loader.exec_module(accuracy)

NAMES = ["no emotion", "anger", "happiness"]
VECTORS = {"calm": np.array([1.0, 0, 0]), "grr": np.array([0, 1.0, 0]), "yay": np.array([0, 0, 1.0])}


def samples(rows):
    """Pre-recognition rows (context texts, speakers, target speaker, label) as a Dataset with a ClassLabel."""
    features = Features({"text": List(Value("string")), "speaker": List(Value("string")),
                         "target_speaker": Value("string"), "label": ClassLabel(names=NAMES)})
    return Dataset.from_dict({"text": [r[0] for r in rows], "speaker": [r[1] for r in rows],
                              "target_speaker": [r[2] for r in rows], "label": [r[3] for r in rows]}, features=features)


def test_persistence_carries_the_target_speakers_own_latest_label_forward():
    # the recogniser learns calm → 0, grr → 1, yay → 2 from the training utterances' own labels
    train = {f"u{i}": (text, label) for i, (text, label) in enumerate([("calm", 0), ("grr", 1), ("yay", 2)] * 5)}
    validation = samples([
        (["grr", "yay"], ["A", "B"], "A", 1),          # A's latest is "grr" (anger), not the last utterance ("yay")
        (["yay", "calm", "grr"], ["A", "B", "A"], "B", 0),  # B's latest: "calm"
        (["grr", "yay"], ["A", "A"], "B", 0),          # B silent in the context: the majority class (0)
    ])
    c, result, predictions = accuracy.persistence_baseline({"validation": validation}, train, VECTORS, 0, NAMES)
    assert predictions["validation"].tolist() == [1, 0, 0]
    assert result["validation"]["wa"] == 1.0 and c in accuracy.PROBE_C


def test_pdd_f1_over_present_classes_and_without_no_emotion():
    names = ["no emotion", "anger", "disgust", "happiness"]  # disgust absent from the references
    result = accuracy.scores([0, 0, 1, 3, 3], [0, 0, 1, 1, 3], names)
    f1 = {"no emotion": 1.0, "anger": 2 / 3, "disgust": 0.0, "happiness": 2 / 3}
    assert result["f1"] == pytest.approx(sum(f1.values()) / 4)
    assert result["f1_present"] == pytest.approx((1.0 + 2 / 3 + 2 / 3) / 3)
    assert result["f1_emotions"] == pytest.approx(2 / 3)
    assert set(accuracy.scores([0, 1], [0, 1], ["neutral", "joy"])) == {"wa", "aa", "f1"}


def tiny_encoder(folder, texts):
    """A random 1-layer BERT and a word tokenizer over `texts`, saved as a sentence-encoder folder."""
    from transformers import BertConfig, BertModel

    from tcmp.presets import word_tokenizer

    tokenizer = word_tokenizer(texts)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_baselines_only_on_a_dailydialog_folder_writes_the_summary(tmp_path, capsys):
    from tests.data.test_dailydialog import TRAIN, VALIDATION

    release = write_release(tmp_path / "dd")
    encoder = tiny_encoder(tmp_path / "encoder", [line[0] for line in TRAIN + VALIDATION])
    out = tmp_path / "out"
    argv = ["--dataset", str(release), "--baselines_only", "--encoder", encoder, "--output_dir", str(out),
            "--vector_cache", str(tmp_path / "vectors")]
    accuracy.main(argv)
    with open(out / "summary.json") as handle:
        summary = json.load(handle)
    assert summary["kind"] == "pdd" and summary["samples"] == {"train": 5, "validation": 2}
    for key in ("majority", "probe", "persistence", "ceiling"):
        assert set(summary[key]) >= {f"validation_{m}" for m in ("wa", "aa", "f1", "f1_present", "f1_emotions")}
    assert "tcmp" not in summary
    # beside validation, the baselines cross-validated over the training dialogues: every training sample predicted once
    assert summary["cv"]["folds"] == 3 and len(summary["cv"]["probe"]["C"]) == 3
    for key in ("majority", "probe", "persistence", "ceiling"):
        assert 0.0 <= summary["cv"][key]["cv_wa"] <= 1.0
    # the validation targets are "no emotion" then "surprise": the majority class ("no emotion") gets one of two
    assert summary["majority"]["validation_wa"] == 0.5
    table = capsys.readouterr().out
    assert "| majority class (no emotion) |" in table and "validation F1_EMOTIONS" in table
    cached = os.listdir(tmp_path / "vectors")
    assert any(name.startswith("baselines-") for name in cached)
    again = accuracy.main(argv)  # the second run reads the vectors and the baselines it cached
    assert os.listdir(tmp_path / "vectors") == cached
    assert again["probe"] == summary["probe"] and again["cv"]["ceiling"] == summary["cv"]["ceiling"]


def test_without_pretraining_starts_from_the_pretraining_recipes_encoder_and_shape(tmp_path):
    recipe = tmp_path / "pretrain.yaml"
    recipe.write_text("text_encoder: all-MiniLM-L6-v2\nhidden_size: 384\ntext_pooling: normalized_mean\n"
                      "freeze_encoders: true\nlearning_rate: 4.0e-4\n")
    assert accuracy.starting_point_flags(None, str(recipe)) == [
        "--text_encoder", "all-MiniLM-L6-v2", "--hidden_size", "384", "--text_pooling", "normalized_mean",
        "--freeze_encoders", "true"]
    assert accuracy.starting_point_flags("ckpt", str(recipe)) == ["--model_name_or_path", "ckpt"]


def test_the_baselines_read_the_encoder_of_the_pretraining_recipe(tmp_path, monkeypatch, capsys):
    from tcmp import presets

    with open(os.path.join(accuracy.ROOT, accuracy.DEFAULT_PRETRAINING)) as handle:  # the fine-tuning recipes start
        output_dir = yaml.safe_load(handle)["output_dir"]  # from the checkpoint the pre-training recipe writes
    for recipe in accuracy.DEFAULT_RECIPES.values():
        with open(os.path.join(accuracy.ROOT, recipe)) as handle:
            assert yaml.safe_load(handle)["model_name_or_path"] == output_dir
    assert accuracy.recipe_text_encoder(os.path.join(accuracy.ROOT, accuracy.DEFAULT_PRETRAINING)) == "all-MiniLM-L6-v2"
    mpnet_recipe = os.path.join(accuracy.ROOT, "examples/pretrain_friends_mpnet.yaml")
    assert accuracy.recipe_text_encoder(mpnet_recipe) == "all-mpnet-base-v2"
    bare = tmp_path / "bare.yaml"
    bare.write_text("hidden_size: 64\n")
    assert accuracy.recipe_text_encoder(str(bare)) == presets.minilm_path()
    install, _ = presets.PACKAGED_TEXT_ENCODERS["all-mpnet-base-v2"]  # as on a machine without the [mpnet] extra:
    monkeypatch.setitem(presets.PACKAGED_TEXT_ENCODERS, "all-mpnet-base-v2", (install, lambda: None))
    release = write_release(tmp_path / "dd")
    with pytest.raises(SystemExit):
        accuracy.main(["--dataset", str(release), "--baselines_only", "--pretrain_recipe", mpnet_recipe,
                       "--output_dir", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert f"{mpnet_recipe}'s text_encoder: all-mpnet-base-v2 is not installed: {install}" in error
    assert not (tmp_path / "out").exists()


def test_paired_bootstrap_of_two_seed_lists_is_the_difference_of_their_means():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 0])
    right, wrong = labels.copy(), (labels + 1) % 3
    same = accuracy.paired_bootstrap([right, wrong], [wrong, right], labels, NAMES, draws=50)
    assert all(low == high == 0.0 for low, high in same.values())
    better = accuracy.paired_bootstrap([right, right], [wrong, right], labels, NAMES, draws=50)
    assert better["wa"][0] > 0.2 and better["wa"][1] <= 0.5 + 1e-9  # mean WA 1.0 against (0 + 1) / 2


def test_compare_reads_two_earlier_variants_runs_and_bootstraps_their_difference(tmp_path):
    from tcmp.data import load_prerecognition_dataset

    release = write_release(tmp_path / "dd")
    validation = load_prerecognition_dataset(str(release), cache_dir=str(tmp_path / "c"))["validation"]
    names = validation.features["label"].names

    def write_runs(folder, right: bool):
        for seed in (0, 1):
            run = folder / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "all_results.json").write_text("{}")
            rows = [{"sample_id": sid, "probabilities": {n: float((n == names[label]) == right) for n in names}}
                    for sid, label in zip(validation["sample_id"], validation["label"])]
            (run / "eval_predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))

    write_runs(tmp_path / "good", right=True)
    write_runs(tmp_path / "bad", right=False)
    result = accuracy.compare(str(release), str(tmp_path / "good"), str(tmp_path / "bad"))
    assert result["validation"]["wa"] == [1.0, 1.0]  # every sample right against every sample wrong


def test_compare_puts_each_seeds_cross_validation_folds_together_over_the_training_samples(tmp_path):
    from tcmp.data import load_prerecognition_dataset
    from tcmp.data.folds import fold_indices

    release = write_release(tmp_path / "dd")
    train = load_prerecognition_dataset(str(release), cache_dir=str(tmp_path / "c"))["train"]
    names = train.features["label"].names

    def write_folds(folder, right: bool):
        for fold, rows in enumerate(fold_indices(train["dialogue_id"], 2)):
            run = folder / f"fold{fold}" / "seed0"
            run.mkdir(parents=True)
            (run / "all_results.json").write_text("{}")
            lines = [{"sample_id": train[i]["sample_id"],
                      "probabilities": {n: float((n == names[train[i]["label"]]) == right) for n in names}} for i in rows]
            (run / "eval_predictions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    write_folds(tmp_path / "cv" / "good", right=True)
    write_folds(tmp_path / "cv" / "bad", right=False)
    [run] = accuracy.saved_runs(str(tmp_path / "cv" / "good"))
    assert sorted(run.predictions["cv"]) == sorted(train["sample_id"])  # both folds, every training sample once
    result = accuracy.compare(str(release), str(tmp_path / "cv" / "good"), str(tmp_path / "cv" / "bad"))
    assert list(result) == ["cv"] and result["cv"]["wa"] == [1.0, 1.0]


def test_logit_adjustment_divides_by_the_training_prior():
    run = accuracy.TCMPRun(0, {}, {"cv": {"s": {"no emotion": 0.6, "anger": 0.3, "happiness": 0.1}}}, "", 0.0)
    prior = {"no emotion": 0.8, "anger": 0.1, "happiness": 0.1}
    [plain] = accuracy.logit_adjusted([run], prior, 0.0)
    assert plain.predictions["cv"]["s"] == pytest.approx(run.predictions["cv"]["s"])
    [adjusted] = accuracy.logit_adjusted([run], prior, 1.0)
    row = adjusted.predictions["cv"]["s"]
    assert max(row, key=row.get) == "anger" and sum(row.values()) == pytest.approx(1.0)
    assert row["anger"] / row["happiness"] == pytest.approx(3.0)  # equal priors keep their ratio
