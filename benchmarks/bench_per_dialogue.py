"""Fine-tuning with the text encoder trained: time per epoch, per sample vs per dialogue (`--per_dialogue_training`).

    python benchmarks/bench_per_dialogue.py --meld ../shared/data/meld --samples 96

Each mode is `run_finetune.py` itself (a fresh process): MiniLM trained at `--encoder_learning_rate`, one epoch over
the first `--samples` P-MELD training samples; the figure is the Trainer's `train_runtime` (which includes the
end-of-epoch evaluation on 8 dev samples and the checkpoint save). The
per-sample path encodes every context utterance of every sample; per dialogue, `exact` encodes each row of samples
that share a context start once, `history` each joined stretch of a dialogue once (see
`tcmp.data.prerecognition_dialogues`). The utterance counts are printed for the whole training split too, so the
epoch time of the full split can be estimated from them.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import settings_line  # noqa: E402
from tcmp.data import load_prerecognition_dataset, prerecognition_dialogues  # noqa: E402
from tcmp.presets import minilm_path  # noqa: E402

MODES = ("per sample", "exact", "history")


def encoded_utterances(samples, mode: str) -> int:
    """Utterance encoder passes per epoch in a mode."""
    rows = samples if mode == "per sample" else prerecognition_dialogues(samples, mode)
    return sum(len(texts) for texts in rows["text"])


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--meld", required=True, help="folder with MELD's *_sent_emo.csv files")
    parser.add_argument("--samples", type=int, default=96, help="training samples timed (the first ones)")
    parser.add_argument("--batch_size", type=int, default=8, help="samples, or dialogue rows, per step")
    parser.add_argument("--encoder_learning_rate", default="2e-5")
    args = parser.parse_args()
    print(settings_line(text="all-MiniLM-L6-v2 (trained)", samples=args.samples, batch_size=args.batch_size))
    train = load_prerecognition_dataset(os.path.abspath(args.meld))["train"]
    for mode in MODES:
        print(f"{mode:10s}: whole training split {encoded_utterances(train, mode)} utterances encoded per epoch, "
              f"the first {args.samples} samples {encoded_utterances(train.select(range(args.samples)), mode)}")
    seconds = {}
    for mode in MODES:
        with tempfile.TemporaryDirectory() as folder:
            flags = "" if mode == "per sample" else f"--per_dialogue_training {mode}"
            command = (
                f"{shlex.quote(sys.executable)} run_finetune.py --dataset {shlex.quote(os.path.abspath(args.meld))} "
                f"--text_encoder {shlex.quote(minilm_path())} --hidden_size 384 --learning_rate 2e-4 "
                f"--encoder_learning_rate {args.encoder_learning_rate} --max_train_samples {args.samples} "
                f"--num_train_epochs 1 --per_device_train_batch_size {args.batch_size} --max_eval_samples 8 "
                f"--do_eval false --do_predict false --save_total_limit 1 --report_to none --disable_tqdm true "
                f"--output_dir {folder} {flags}"
            )
            subprocess.run(command, shell=True, cwd=ROOT, check=True, capture_output=True)
            with open(os.path.join(folder, "train_results.json")) as handle:
                seconds[mode] = json.load(handle)["train_runtime"]
        print(f"{mode:10s}: one epoch over {args.samples} samples in {seconds[mode]:.1f} s", flush=True)
    for mode in MODES[1:]:
        print(f"speed-up of {mode} over per sample: {seconds['per sample'] / seconds[mode]:.2f}x")


if __name__ == "__main__":
    main()
