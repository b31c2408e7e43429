#!/usr/bin/env python
"""
TCMP on a busy machine: the same workloads with and without tcmp's thread settings, while a competing process keeps
one core busy (as another job, a CI neighbour or a browser does).

Settings compared, each in a fresh process:
- `before`: `OMP_WAIT_POLICY=ACTIVE`, i.e. OpenMP's spinning waits;
- `tcmp`: OpenMP's default waits; every workload calls `tcmp.configure_threads()` as the scripts do (threads from
  affinity, cgroup quota and load, unless `OMP_NUM_THREADS` is set);
- `one_thread`: `OMP_NUM_THREADS=1`.

Workloads: `gru` (a small GRU, the dialogue context's shape), `streaming` (a tiny model's streaming predictor, 60
turns), `finetune` (run_finetune.py on the demo corpus, tiny model, 30 steps), and with `--main_job` the README's
main job (`run_main_job.py`, minutes). Prints seconds (or steps/s) per workload and setting.

    python benchmarks/bench_busy_machine.py [--no_load] [--main_job] [--workloads ...] [--settings ...] [--timeout S]
"""

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = {
    "before": {"OMP_WAIT_POLICY": "ACTIVE"},
    "tcmp": {},
    "one_thread": {"OMP_NUM_THREADS": "1"},
}
GRU = """
import time, tcmp, torch
tcmp.configure_threads()  # as the scripts do
gru = torch.nn.GRU(64, 64, batch_first=True)
x = torch.randn(4, 11, 64)
start, steps = time.time(), 0
while time.time() - start < 5:
    with torch.no_grad():
        gru(x)
    steps += 1
print(f"{steps / (time.time() - start):.1f} steps/s with {torch.get_num_threads()} threads")
"""
STREAMING = """
import time, numpy as np, tcmp
tcmp.configure_threads()  # as the scripts do
from tcmp.presets import make_processor, tiny_config, word_tokenizer
from tcmp.streaming import StreamingPreRecognizer
words = "hello how are you fine thanks i am sad happy great terrible okay".split()
tokenizer = word_tokenizer([" ".join(words)])
config = tiny_config(len(tokenizer), num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
recognizer = StreamingPreRecognizer(tcmp.TCMPForEmotionPreRecognition(config), make_processor(tokenizer))
rng = np.random.default_rng(0)
start = time.time()
for turn in range(60):
    recognizer.add_utterance(text=" ".join(rng.choice(words, 6)), audio=rng.standard_normal(8000), sampling_rate=16000)
print(f"{time.time() - start:.1f} s for 60 turns")
"""


def busy_loop():
    """Keep one core busy until killed."""
    while True:
        pass


def run(workload: str, setting: str, output_dir: str, timeout: float | None) -> str:
    env = {**os.environ, **SETTINGS[setting], "PYTHONPATH": REPO}
    for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS"):
        if name not in SETTINGS[setting]:
            env.pop(name, None)
    if workload == "gru":
        command = [sys.executable, "-c", GRU]
    elif workload == "streaming":
        command = [sys.executable, "-c", STREAMING]
    elif workload == "finetune":
        command = [sys.executable, os.path.join(REPO, "run_finetune.py"), "--dataset", "demo", "--text_only",
                   "--output_dir", os.path.join(output_dir, f"finetune-{setting}"), "--max_steps", "30",
                   "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
                   "--report_to", "none"]
    else:
        command = [sys.executable, os.path.join(REPO, "run_main_job.py"), "--output_dir",
                   os.path.join(output_dir, f"main-{setting}")]
    start = time.time()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"> {timeout:.0f} s wall (stopped at --timeout)"
    took = time.time() - start
    if done.returncode != 0:
        return f"failed ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode})"
    detail = done.stdout.strip().splitlines()[-1] if workload in ("gru", "streaming") else ""
    return f"{took:.1f} s wall" + (f"; {detail}" if detail else "")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--no_load", action="store_true", help="no competing process (an idle machine)")
    parser.add_argument("--main_job", action="store_true", help="also time run_main_job.py (minutes per setting)")
    parser.add_argument("--workloads", nargs="*", default=["gru", "streaming", "finetune"])
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--timeout", type=float, default=None, help="stop a run after this many seconds (reported as >)")
    args = parser.parse_args()
    workloads = args.workloads + (["main_job"] if args.main_job else [])
    load = None if args.no_load else multiprocessing.Process(target=busy_loop, daemon=True)
    if load is not None:
        load.start()
    print(f"cores usable: {len(os.sched_getaffinity(0))}; competing busy process: {'no' if load is None else 'yes'}")
    try:
        with tempfile.TemporaryDirectory() as output_dir:
            for workload in workloads:
                for setting in args.settings:
                    print(f"{workload:10s} {setting:11s} {run(workload, setting, output_dir, args.timeout)}", flush=True)
    finally:
        if load is not None:
            load.terminate()


if __name__ == "__main__":
    main()
