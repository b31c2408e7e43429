"""One streaming turn's latency (p50/p95): eager PyTorch vs the torch.export program vs ONNX Runtime.

All three run `tcmp.export.TCMPStreamingStep` (one session: the new utterance's encoders, one GRU/attention step per
stream, the classifier) on the same processed inputs, turn by turn through a demo conversation, interleaved so that
load from other processes hits each alike; the processor's time is not included (it is the same for all three).
The exported program and the ONNX model have dynamic text and audio lengths. Also printed: the export times and the
largest logit difference from eager.
"""

import argparse
import os
import sys
import tempfile

import numpy as np
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
from tcmp.export import TCMPStreamingStep  # noqa: E402


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--turns", type=int, default=20, help="timed turns (after 2 warm-up turns)")
    args = parser.parse_args()
    import onnxruntime

    print(settings_line(text="BERT 6x384", audio="HuBERT 4x384", attention_window=8, timed_turns=args.turns,
                        onnxruntime=onnxruntime.__version__, data="demo corpus dialogues joined end to end"))
    torch.manual_seed(0)
    processor = benchmark_processor()
    model = TCMPForEmotionPreRecognition(benchmark_config(processor, num_labels=7)).eval()
    step = TCMPStreamingStep(model)
    conversation = demo_turns(args.turns + 2)
    print(f"timed turns: {length_summary([conversation[2:]])}")
    turns = [processor([[utterance]]) for utterance in conversation]

    with torch.no_grad():
        seconds, program = timed(
            lambda: torch.export.export(step, step.inputs(turns[0], step.initial_state(1)),
                                        dynamic_shapes=step.dynamic_shapes())
        )
        print(f"torch.export: {seconds:.1f} s")
        seconds, onnx_program = timed(
            lambda: torch.onnx.export(program, (), input_names=step.input_names, output_names=step.output_names,
                                      dynamo=True)
        )
        print(f"torch.onnx.export (dynamo, optimised): {seconds:.1f} s")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "step.onnx")
        onnx_program.save(path)
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

    exported = program.module()
    states = {name: step.initial_state(1) for name in ("eager", "exported")}
    onnx_state = [t.numpy() for t in step.initial_state(1)]
    times = {"eager": [], "exported": [], "onnxruntime": []}
    largest = {"exported": 0.0, "onnxruntime": 0.0}
    with torch.no_grad():
        for turn, batch in enumerate(turns):
            utterance_inputs = step.inputs(batch, ())
            seconds, (logits, *states["eager"]) = timed(lambda: step(*utterance_inputs, *states["eager"]))
            exported_seconds, (exported_logits, *states["exported"]) = timed(
                lambda: exported(*utterance_inputs, *states["exported"])
            )
            feeds = dict(zip(step.input_names, [t.numpy() for t in utterance_inputs] + onnx_state))
            onnx_seconds, (onnx_logits, *onnx_state) = timed(lambda: session.run(step.output_names, feeds))
            largest["exported"] = max(largest["exported"], float((exported_logits - logits).abs().max()))
            largest["onnxruntime"] = max(largest["onnxruntime"], float(np.abs(onnx_logits - logits.numpy()).max()))
            if turn >= 2:
                times["eager"].append(seconds)
                times["exported"].append(exported_seconds)
                times["onnxruntime"].append(onnx_seconds)
    for name, values in times.items():
        difference = f", max |logits - eager| {largest[name]:.1e}" if name in largest else ""
        print(f"{name:12s}: p50 {percentile(values, 50) * 1000:7.1f} ms, p95 {percentile(values, 95) * 1000:7.1f} ms"
              f"{difference}")
    eager = percentile(times["eager"], 50)
    print(f"p50 speed-up vs eager: exported {eager / percentile(times['exported'], 50):.2f}x, "
          f"onnxruntime {eager / percentile(times['onnxruntime'], 50):.2f}x")


if __name__ == "__main__":
    main()
