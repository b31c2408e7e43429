"""P-MELD accuracy against baselines: majority class, a linear probe on frozen MiniLM vectors, TCMP over seeds.

    python benchmarks/accuracy_pmeld.py --meld ../shared/data/meld
    python benchmarks/accuracy_pmeld.py --meld ../shared/data/meld --parallel 2     # 2 seeds at a time on 2 cores
    python benchmarks/accuracy_pmeld.py --meld ../shared/data/meld --seeds 0 1 2 --finetune_args "--learning_rate 1e-4"
    python benchmarks/accuracy_pmeld.py --meld ../shared/data/meld --skip_probe --parallel 2 \
        --pretrain "--hidden_size 384 --freeze_encoders --use_feature_cache --text_pooling normalized_mean --dropout 0.3" \
        --finetune_args "--per_dialogue_training history --learning_rate 1e-4 --weight_decay 0.1 --average_weights ..."

Data: P-MELD from the MELD CSVs of `--meld` (`tcmp.data.build_pmeld`, the default rule, sentiment, text only), every
split present (MELD's train and dev CSVs give train and validation).
Baselines:
- majority class: always the most frequent training label;
- linear probe: each utterance mean-pooled by the frozen MiniLM (L2-normalised, as sentence-transformers does); a
  sample's features are [last context utterance; second-to-last (zeros if none); mean of the context];
  scikit-learn `LogisticRegression(class_weight="balanced")`, C from {0.01, 0.1, 1, 10} chosen on validation WA.
- ceiling (not a usable model: it reads labels no model sees): the same probe also given the true labels of the
  context utterances (one-hot: last, second-to-last, the target speaker's latest, context mean), read from the CSVs.
  It bounds what knowing the context's sentiment perfectly is worth on this data.
TCMP: `run_finetune.py` itself (a fresh process per seed, the command printed), optionally after `run_pretrain.py`
on MELD's training dialogues (`--pretrain`: unlabelled, text only); mean ± std over the seeds, each run's time, the
ensemble of the seeds (mean of their `*_predictions.jsonl` probabilities) and a 95 % paired bootstrap interval of
TCMP − probe (the same resampled samples for both), which says whether a gap is more than the split's noise.
"""

import argparse
import functools
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tcmp.data import load_prerecognition_dataset  # noqa: E402
from tcmp.data.common import SplitReport  # noqa: E402
from tcmp.data.meld import meld_csv_files, read_meld_csv  # noqa: E402
from tcmp.metrics import load_metric  # noqa: E402
from tcmp.presets import minilm_path  # noqa: E402
from tcmp.threads import usable_cpus  # noqa: E402

README_FINETUNE = (
    "--hidden_size 384 --text_pooling normalized_mean --freeze_encoders --use_feature_cache "
    "--per_dialogue_training history --dropout 0.3 --learning_rate 1e-4 --weight_decay 0.1 --num_train_epochs 6 "
    "--per_device_train_batch_size 8 --average_weights --metric_for_best_model f1 --early_stopping_patience none"
)
"""The README's P-MELD fine-tuning settings (text only, MiniLM frozen, features cached): the best of issue 15's levers."""
PROBE_C = (0.01, 0.1, 1.0, 10.0)
METRICS = ("wa", "aa", "f1")


@functools.cache
def pre_recognition_metric():
    return load_metric("pre_recognition")


def scores(predictions, references, num_labels: int) -> dict:
    result = pre_recognition_metric().compute(
        predictions=np.asarray(predictions), references=np.asarray(references), num_labels=num_labels
    )
    return {name: float(result[name]) for name in METRICS}


@torch.no_grad()
def sentence_vectors(texts: list[str], encoder: str, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Mean-pooled, L2-normalised vectors of the frozen sentence encoder, one per distinct text."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(encoder), AutoModel.from_pretrained(encoder).eval()
    distinct = sorted(set(texts), key=len)
    vectors = {}
    for start in range(0, len(distinct), batch_size):
        batch = distinct[start : start + batch_size]
        inputs = tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)
        vectors.update(zip(batch, pooled.numpy()))
    return vectors


def probe_features(split, vectors: dict[str, np.ndarray]) -> np.ndarray:
    """[last context utterance; second-to-last (zeros if none); mean of the context] per sample."""
    rows = []
    for context in split["text"]:
        encoded = np.stack([vectors[text] for text in context])
        before_last = encoded[-2] if len(encoded) > 1 else np.zeros_like(encoded[-1])
        rows.append(np.concatenate([encoded[-1], before_last, encoded.mean(0)]))
    return np.stack(rows)


def context_labels(meld: str, label_names: list[str]) -> dict[str, dict[str, int]]:
    """split → utterance id → the true label of every utterance of MELD's CSVs (for the ceiling; never a model input)."""
    report = SplitReport()
    return {
        split: {f"dia{d}_utt{row['number']}": label_names.index(row["label"])
                for d, rows in read_meld_csv(path, "sentiment", report).items() for row in rows}
        for split, path in meld_csv_files(meld).items()
    }


def context_label_features(split, labels: dict[str, int], num_labels: int) -> np.ndarray:
    """One-hot true labels of [last context utterance; second-to-last; the target speaker's latest; context mean]."""
    rows = []
    for ids, speakers, target in zip(split["utterance_id"], split["speaker"], split["target_speaker"]):
        one_hot = np.eye(num_labels)[[labels[uid] for uid in ids]]
        own = [i for i, speaker in enumerate(speakers) if speaker == target]
        none = np.zeros(num_labels)
        rows.append(np.concatenate([
            one_hot[-1], one_hot[-2] if len(ids) > 1 else none, one_hot[own[-1]] if own else none, one_hot.mean(0)
        ]))
    return np.stack(rows)


def fit_probe(features: dict, labels: dict, num_labels: int) -> tuple[float, dict, dict]:
    """Balanced logistic regression, C chosen on validation WA; returns (C, split → scores, split → predictions)."""
    from sklearn.linear_model import LogisticRegression

    fits = {}
    for c in PROBE_C:
        probe = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(features["train"], labels["train"])
        predictions = {name: probe.predict(x) for name, x in features.items()}
        fits[c] = ({name: scores(p, labels[name], num_labels) for name, p in predictions.items()}, predictions)
    best = max(PROBE_C, key=lambda c: fits[c][0]["validation"]["wa"])
    return best, *fits[best]


def linear_probes(samples, encoder: str, num_labels: int, meld: str) -> tuple[list[tuple[str, dict]], dict]:
    """
    Rows of the linear probe and of the ceiling (the same probe also given the true labels of the context
    utterances), and the probe's predictions (split → array).
    """
    started = time.perf_counter()
    vectors = sentence_vectors([t for split in samples.values() for c in split["text"] for t in c], encoder)
    features = {name: probe_features(split, vectors) for name, split in samples.items()}
    labels = {name: np.asarray(split["label"]) for name, split in samples.items()}
    c, probe, predictions = fit_probe(features, labels, num_labels)
    rows = [(f"linear probe, C={c:g} ({time.perf_counter() - started:.0f} s)", probe)]
    truth = context_labels(meld, samples["train"].features["label"].names)
    with_truth = {
        name: np.concatenate([features[name], context_label_features(split, truth[name], num_labels)], axis=1)
        for name, split in samples.items()
    }
    c, ceiling, _ = fit_probe(with_truth, labels, num_labels)
    rows.append((f"ceiling: the probe given the context's true labels, C={c:g}", ceiling))
    return rows, predictions


def run_probabilities(folder: str, prefix: str, split) -> np.ndarray:
    """(samples, classes) probabilities of a fine-tuning run's `{prefix}_predictions.jsonl`, in the split's order."""
    names = split.features["label"].names
    with open(os.path.join(folder, f"{prefix}_predictions.jsonl"), encoding="utf-8") as handle:
        lines = {row["sample_id"]: row for row in map(json.loads, handle)}
    return np.array([[lines[sample_id]["probabilities"][name] for name in names] for sample_id in split["sample_id"]])


def paired_bootstrap(tcmp: list[np.ndarray], probe: np.ndarray, labels: np.ndarray, num_labels: int,
                     draws: int = 1000) -> dict[str, tuple[float, float]]:
    """95 % interval of (mean over the seeds of TCMP's metric − the probe's), resampling the same samples for both."""
    rng = np.random.default_rng(0)
    differences = {m: [] for m in METRICS}
    for _ in range(draws):
        pick = rng.integers(0, len(labels), len(labels))
        base = scores(probe[pick], labels[pick], num_labels)
        per_seed = [scores(p[pick], labels[pick], num_labels) for p in tcmp]
        for m in METRICS:
            differences[m].append(np.mean([s[m] for s in per_seed]) - base[m])
    return {m: tuple(np.percentile(differences[m], [2.5, 97.5])) for m in METRICS}


def run_tcmp(meld: str, seed: int, output_dir: str, finetune_args: str, pretrain_args: str | None, threads: int) -> dict:
    """`run_pretrain.py` (if asked) then `run_finetune.py` in fresh processes; the metrics, commands and times."""
    python = shlex.quote(sys.executable)
    common = f"--dataset {shlex.quote(meld)} --seed {seed} --report_to none --save_total_limit 1"
    commands = []
    start_from = f"--text_encoder {shlex.quote(minilm_path())}"
    if pretrain_args is not None:
        folder = os.path.join(output_dir, f"pretrain_seed{seed}")
        commands.append(f"{python} run_pretrain.py {common} {start_from} {pretrain_args} --output_dir {folder}")
        start_from = f"--model_name_or_path {folder}"
    folder = os.path.join(output_dir, f"finetune_seed{seed}")
    commands.append(f"{python} run_finetune.py {common} {start_from} {finetune_args} --output_dir {folder}")
    times = []
    for number, command in enumerate(commands):
        log = os.path.join(output_dir, f"seed{seed}_step{number}.log")
        started = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        with open(log, "w") as handle:
            done = subprocess.run(command, shell=True, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"seed {seed}: command failed ({done.returncode}), see {log}:\n{command}")
    with open(os.path.join(folder, "all_results.json")) as handle:
        results = json.load(handle)
    return {"results": results, "commands": commands, "seconds": times, "folder": folder}


def mean_std(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--meld", required=True, help="folder with MELD's *_sent_emo.csv files")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="TCMP seeds (none: baselines only)")
    parser.add_argument("--finetune_args", default=README_FINETUNE, help="run_finetune.py flags (default: the README's)")
    parser.add_argument(
        "--pretrain", nargs="?", const="", default=None, metavar="ARGS",
        help="pre-train on MELD's training dialogues first (run_pretrain.py, with these extra flags)",
    )
    parser.add_argument("--output_dir", default="/tmp/tcmp-accuracy-pmeld", help="where the runs write")
    parser.add_argument("--skip_probe", action="store_true", help="only the TCMP runs (and the majority class)")
    parser.add_argument(
        "--parallel", type=int, default=1,
        help="seeds run at once, each with (usable cores / this) torch threads (2 on 2 cores: one thread each)",
    )
    args = parser.parse_args()
    if not os.path.isdir(args.meld):
        raise SystemExit(f"--meld {args.meld}: no such folder")
    meld = os.path.abspath(args.meld)
    os.makedirs(args.output_dir, exist_ok=True)

    samples = load_prerecognition_dataset(meld)
    label_names = samples["train"].features["label"].names
    num_labels = len(label_names)
    splits = [name for name in ("validation", "test") if name in samples]
    train_labels = np.asarray(samples["train"]["label"])
    majority = int(np.bincount(train_labels, minlength=num_labels).argmax())
    rows = [("majority class", {s: scores(np.full(len(samples[s]), majority), samples[s]["label"], num_labels) for s in splits})]

    probe_predictions = None
    if not args.skip_probe:
        probe_rows, probe_predictions = linear_probes(samples, minilm_path(), num_labels, meld)
        rows += probe_rows

    threads = max(1, usable_cpus() // args.parallel)
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(
            lambda seed: run_tcmp(meld, seed, args.output_dir, args.finetune_args, args.pretrain, threads), args.seeds
        ))
    for seed, run in zip(args.seeds, runs):
        seconds = " + ".join(f"{s:.0f}" for s in run["seconds"])
        print(f"seed {seed}: {seconds} s, " + ", ".join(
            f"{s} {m.upper()} {run['results'][f'{p}_{m}']:.3f}" for s, p in zip(splits, ("eval", "test")) for m in METRICS
        ), flush=True)
    prefixes = dict(zip(("validation", "test"), ("eval", "test")))
    per_seed = {s: {m: [run["results"][f"{prefixes[s]}_{m}"] for run in runs] for m in METRICS} for s in splits}
    probabilities = {s: [run_probabilities(run["folder"], prefixes[s], samples[s]) for run in runs] for s in splits}
    ensemble = {
        s: scores(np.mean(probabilities[s], axis=0).argmax(-1), samples[s]["label"], num_labels) for s in splits
    } if runs else None

    print(f"\nP-MELD ({meld}): " + ", ".join(f"{name} {len(split)} samples" for name, split in samples.items()))
    print(f"labels: {', '.join(label_names)}; text only; default reconstruction rule")
    print("command (first seed):\n  " + "\n  ".join(runs[0]["commands"]) if runs else "")
    header = "| | " + " | ".join(f"{s} {m.upper()}" for s in splits for m in METRICS) + " |"
    print("\n" + header + "\n|" + "---|" * (1 + len(splits) * len(METRICS)))
    for name, result in rows:
        print(f"| {name} | " + " | ".join(f"{result[s][m]:.3f}" for s in splits for m in METRICS) + " |")
    if runs:
        label = f"TCMP, {len(runs)} seed{'s' if len(runs) > 1 else ''} (mean ± std)"
        print(f"| {label} | " + " | ".join(mean_std(per_seed[s][m]) for s in splits for m in METRICS) + " |")
        for seed, run in zip(args.seeds, runs):
            seconds = " + ".join(f"{s:.0f}" for s in run["seconds"])
            print(f"| seed {seed} ({seconds} s) | " + " | ".join(
                f"{run['results'][f'{prefixes[s]}_{m}']:.3f}" for s in splits for m in METRICS) + " |")
        print(f"| TCMP, ensemble of the {len(runs)} seeds (mean probability) | " + " | ".join(
            f"{ensemble[s][m]:.3f}" for s in splits for m in METRICS) + " |")
    if runs and probe_predictions is not None:
        print("\nTCMP (mean over the seeds) − linear probe, 95 % paired bootstrap interval over the samples:")
        for s in splits:
            labels = np.asarray(samples[s]["label"])
            interval = paired_bootstrap(
                [p.argmax(-1) for p in probabilities[s]], probe_predictions[s], labels, num_labels
            )
            print(f"  {s}: " + ", ".join(f"{m.upper()} [{low:+.3f}, {high:+.3f}]" for m, (low, high) in interval.items()))
    print(f"\nsettings: finetune {args.finetune_args!r}; pretrain {args.pretrain!r}; {args.parallel} seed(s) at once, "
          f"{threads} torch thread(s) each")


if __name__ == "__main__":
    main()
