#!/usr/bin/env python
"""
Pre-train TCMP (text–audio matching + forthcoming-utterance prediction) on unlabelled dialogues.

    python run_pretrain.py --dataset demo --output_dir out/pretrain
    python run_pretrain.py examples/pretrain_demo.yaml
    accelerate launch --multi_gpu run_pretrain.py --dataset umd/manifest.jsonl --text_encoder bert --audio_encoder hubert ...

Dialogues are cut into sliding windows (11 utterances, stride 5, offset shifted each epoch); the other dialogues'
utterances of a batch are the negatives — under data parallelism (`accelerate launch --multi_gpu`) those of every
process (`--gather_negatives`, the default). The dev split selects the checkpoint (text R1@11); the test
split is scored once at the end. With `--freeze_encoders --use_feature_cache` every distinct utterance is encoded
once and the windows train on the cached features.
"""

import logging

from transformers import set_seed

from tcmp import TCMPForPreTraining, configure_threads
from tcmp.data import PretrainingWindows, build_umd, load_pretraining_dataset
from tcmp.data.iterable_windows import stream_pretraining_windows, stream_texts
from tcmp.errors import ArgumentsError
from tcmp.feature_cache import CachedFeatureWindows
from tcmp.metrics import RetrievalMetrics
from tcmp.preflight import preflight, run_as_script
from tcmp.training.health import TrainingHealthCallback
from tcmp.training import (
    PRETRAINED,
    ModelArguments,
    PretrainingArguments,
    PretrainingDataArguments,
    SetEpochCallback,
    TCMPPreTrainer,
    build_model_and_processor,
    check_selection_metric,
    check_splits,
    data_collator,
    describe_dataset,
    evaluate_split,
    final_evaluations,
    finish_run,
    parse_arguments,
    starting_point,
    train_and_save,
    training_texts,
)


def streaming_data(model_args, data_args, training_args):
    """
    `--streaming`: the training windows streamed from the shards of --dataset, each process reading its own shards
    (Accelerate assigns them: batches are not dispatched from process 0), and the validation/test dialogues of the
    manifests that --dataset_options names (map-style, small).
    """
    if training_args.max_steps <= 0:
        raise ArgumentsError("--streaming needs --max_steps: a stream has no length to count epochs by")
    if model_args.use_feature_cache:
        raise ArgumentsError("--streaming cannot be combined with --use_feature_cache (the cache encodes a whole corpus)")
    options = data_args.loader_options()
    manifests = {split: options.pop(split) for split in ("validation", "test") if split in options}
    if "validation" not in manifests and (training_args.do_eval or training_args.eval_strategy != "no"):
        raise ArgumentsError(
            "--streaming with evaluation needs a validation manifest: --dataset_options '{\"validation\": \"dev.jsonl\"}' "
            "(or --eval_strategy no --load_best_model_at_end false --do_eval false)"
        )
    unknown = sorted(set(options) - {"shuffle_buffer"})
    if unknown:
        raise ArgumentsError(
            f"--dataset_options {', '.join(unknown)} do not apply to --streaming (validation, test, shuffle_buffer do)"
        )
    train, schedule = stream_pretraining_windows(
        data_args.dataset, data_args.window, data_args.stride, training_args.seed, options.get("shuffle_buffer", 1000)
    )
    training_args.accelerator_config.dispatch_batches = False
    return train, schedule, data_args.truncate(dict(build_umd(manifests))) if manifests else {}


def main(argv=None, callbacks=()) -> dict:
    """Run pre-training; returns every metric written to `all_results.json`. `callbacks` are added to the Trainer."""
    model_args, data_args, training_args = parse_arguments(
        (ModelArguments, PretrainingDataArguments, PretrainingArguments), argv
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    configure_threads()  # PyTorch's thread count for a shared machine (tcmp.threads)
    preflight(training_args)  # unwritable output folder, full disk, broken checkpoint: stop before any work
    set_seed(training_args.seed)  # before the model is built: new layers start the same in every run with this seed

    if data_args.streaming:
        stream, schedule, dialogues = streaming_data(model_args, data_args, training_args)
        texts = stream_texts(data_args.dataset)
    else:
        dialogues = data_args.truncate(load_pretraining_dataset(data_args.dataset, **data_args.loader_options()))
        check_splits(dialogues, training_args, data_args.dataset)
        texts = training_texts(dialogues["train"])
    model, processor = build_model_and_processor(model_args, TCMPForPreTraining, texts)
    streams = model.config.available_streams
    check_selection_metric(training_args, streams)

    dialogues, collator = data_collator(model_args, dialogues, model, processor)
    windows = {
        name: PretrainingWindows(split, window=data_args.window, stride=data_args.stride, seed=training_args.seed)
        for name, split in dialogues.items()
    }
    if model_args.use_feature_cache:
        windows = {name: CachedFeatureWindows(split) for name, split in windows.items()}
    if data_args.streaming:
        windows["train"] = stream
    metrics = RetrievalMetrics(streams, seed=data_args.retrieval_seed)
    callbacks = [SetEpochCallback(schedule if data_args.streaming else windows["train"]), TrainingHealthCallback(), *callbacks]
    trainer = TCMPPreTrainer.for_splits(model, training_args, processor, collator, windows, metrics, callbacks)

    results = {}
    if training_args.do_train:
        results.update(train_and_save(trainer))
    for split, prefix in final_evaluations(training_args, windows):
        results.update(evaluate_split(trainer, windows[split], prefix).metrics)

    return finish_run(
        trainer,
        results,
        data_args.dataset,
        "TCMP pre-trained on " + data_args.dataset,
        PRETRAINED,
        {
            "Dataset": f"{describe_dataset(data_args.dataset, data_args.loader_options())}: unlabelled dialogues, "
            + ", ".join(f"{name} {len(split)} dialogues / {len(windows[name])} windows" for name, split in dialogues.items())
            + ("; train streamed from its manifest shards" if data_args.streaming else ""),
            "Pre-training windows": "Reconstruction rule: none (pre-training reads whole unlabelled dialogues; the rule "
            "applies when fine-tuning). Sliding windows of "
            f"{data_args.window} utterances, stride {data_args.stride}, start offset shifted each epoch; the "
            "forthcoming utterances of a window are predicted from the ones before; negatives: the other "
            "dialogues' utterances of the batch (of every process, with --gather_negatives); retrieval metrics over "
            f"the true utterance and 4 or 10 seeded negatives from other dialogues (seed {data_args.retrieval_seed}).",
        },
        starting_point(model_args),
    )


if __name__ == "__main__":
    run_as_script(main)
