"""Streaming latency per turn (p50/p95) at 10, 50 and 500 turns of history, vs re-encoding the last 11 utterances.

ours:      StreamingPreRecognizer.add_utterance — encodes only the new utterance, then one GRU/attention step.
reference: TCMPForEmotionPreRecognition on the last 11 utterances, all re-encoded every turn.
Utterances: the demo corpus's pre-training dialogues (tcmp.data.build_demo) joined end to end into one long
conversation: 5–20 words of text and 1.5–5 s of audio each. The history sets the state before the timed turns.
"""

import argparse
import copy
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    benchmark_config,
    benchmark_processor,
    demo_turns,
    length_summary,
    percentile,
    settings_line,
    timed,
)
from tcmp import TCMPForEmotionPreRecognition  # noqa: E402
from tcmp.streaming import StreamingPreRecognizer  # noqa: E402


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--histories", type=int, nargs="+", default=[10, 50, 500])
    parser.add_argument("--turns", type=int, default=10, help="timed turns per history length")
    args = parser.parse_args()
    print(settings_line(text="BERT 6x384", audio="HuBERT 4x384", attention_window=8, timed_turns=args.turns,
                        histories=args.histories, data="demo corpus dialogues joined end to end"))
    torch.manual_seed(0)
    processor = benchmark_processor()
    model = TCMPForEmotionPreRecognition(benchmark_config(processor, num_labels=7)).eval()
    conversation = demo_turns(max(args.histories) + 10 + args.turns)
    history, context, timed_utterances = (conversation[: max(args.histories)], conversation[-10 - args.turns : -args.turns],
                                          conversation[-args.turns :])
    print(f"timed turns: {length_summary([timed_utterances])}")

    warm_up = StreamingPreRecognizer(model, processor)
    for utterance in timed_utterances[:2]:
        warm_up.add_utterance(**utterance)
    snapshots = {}
    for length in args.histories:
        recognizer = StreamingPreRecognizer(model, processor)
        for utterance in history[:length]:
            recognizer.add_utterance(**utterance)
        snapshots[length] = copy.deepcopy(recognizer.sessions)
    results = {length: [] for length in args.histories}
    reference = []
    recognizer = StreamingPreRecognizer(model, processor)
    with torch.no_grad():
        model(**processor([context]))  # warm-up
        for utterance in timed_utterances:  # interleaved, so that load from other processes hits every setting alike
            for length in args.histories:
                recognizer.sessions = copy.deepcopy(snapshots[length])  # exactly `length` turns of history
                seconds, _ = timed(lambda: recognizer.add_utterance(**utterance))
                results[length].append(seconds)
            last_11 = (context + [utterance])[-11:]
            seconds, _ = timed(lambda: model(**processor([last_11])))
            reference.append(seconds)
            context = last_11
    for length in args.histories:
        state = snapshots[length]["default"].num_elements()
        print(f"ours, history {length:4d}: p50 {percentile(results[length], 50) * 1000:7.1f} ms, "
              f"p95 {percentile(results[length], 95) * 1000:7.1f} ms, state {state} floats")
    print(f"reference (re-encode last 11): p50 {percentile(reference, 50) * 1000:7.1f} ms, "
          f"p95 {percentile(reference, 95) * 1000:7.1f} ms (independent of history by construction)")
    lengths = sorted(results)
    flat = percentile(results[lengths[-1]], 50) / percentile(results[lengths[0]], 50)
    print(f"history {lengths[-1]} vs {lengths[0]}: {flat:.2f}x p50 (target <= 1.2x)")
    print(f"speed-up vs re-encoding at history {lengths[-1]}: "
          f"{percentile(reference, 50) / percentile(results[lengths[-1]], 50):.1f}x p50 (target >= 5x)")


if __name__ == "__main__":
    main()
