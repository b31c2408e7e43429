#!/usr/bin/env python
"""
Fine-tune TCMP for emotion pre-recognition: the emotion of the next utterance, from the context before it.

    python run_finetune.py --dataset demo --model_name_or_path out/pretrain --output_dir out/finetune
    python run_finetune.py --dataset ../shared/data/meld --text_encoder "$(python -c 'import tcmp.presets as p; print(p.minilm_path())')" --output_dir out/pmeld
    python run_finetune.py examples/finetune_demo.yaml

The model starts from a TCMP checkpoint (pre-trained or fine-tuned), from two local encoder folders, or from a tiny
random config. Class weights are counted on the training split only; dev WA selects the checkpoint; the test split
(when the corpus has one) is scored once at the end. `--cv_folds K --cv_fold I` scores fold I of the training
dialogues instead, trained on the other folds (settings are chosen this way, not on dev).
"""

import logging

import numpy as np

from transformers import set_seed

from tcmp import EmotionPreRecognitionPipeline, TCMPForEmotionPreRecognition, configure_threads
from tcmp.data import dataset_stats, format_stats, load_prerecognition_dataset, prerecognition_dialogues
from tcmp.errors import ArgumentsError
from tcmp.metrics import PreRecognitionMetrics, class_weights, logit_adjustment, majority_baseline
from tcmp.preflight import preflight, run_as_script
from tcmp.training.health import TrainingHealthCallback
from tcmp.training import (
    FINETUNED,
    FinetuningArguments,
    FinetuningDataArguments,
    ModelArguments,
    TCMPTrainer,
    build_model_and_processor,
    check_splits,
    data_collator,
    describe_dataset,
    describe_rule,
    evaluate_split,
    final_evaluations,
    finish_run,
    parse_arguments,
    starting_point,
    train_and_save,
    training_texts,
    write_prerecognition_report,
)


def main(argv=None, callbacks=()) -> dict:
    """Run fine-tuning; returns every metric written to `all_results.json`. `callbacks` are added to the Trainer."""
    model_args, data_args, training_args = parse_arguments((ModelArguments, FinetuningDataArguments, FinetuningArguments), argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    configure_threads()  # PyTorch's thread count for a shared machine (tcmp.threads)
    preflight(training_args)  # unwritable output folder, full disk, broken checkpoint: stop before any work
    set_seed(training_args.seed)  # before the model is built: new layers start the same in every run with this seed

    samples, build = load_prerecognition_dataset(data_args.dataset, return_report=True, **data_args.loader_options())
    samples = data_args.cross_validation(data_args.truncate(samples))
    check_splits(samples, training_args, data_args.dataset)
    label_names = samples["train"].features["label"].names
    model, processor = build_model_and_processor(
        model_args,
        TCMPForEmotionPreRecognition,
        training_texts(samples["train"]),
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
    )
    if model.config.context_emotion_loss_weight > 0 and not data_args.per_dialogue_training:
        raise ArgumentsError(
            "--context_emotion_loss_weight needs --per_dialogue_training (exact or history): only per-dialogue rows "
            "hold the labels of the context utterances"
        )
    train_labels = np.asarray(samples["train"]["label"])
    model.set_class_weights(class_weights(train_labels, len(label_names), power=training_args.class_weight_power))
    tau = training_args.logit_adjustment_tau
    model.set_logit_adjustment(logit_adjustment(train_labels, len(label_names), tau) if tau > 0 else None)

    training_rows = dict(samples)
    if data_args.per_dialogue_training:
        training_rows["train_dialogues"] = prerecognition_dialogues(samples["train"], data_args.per_dialogue_training)
    splits, collator = data_collator(model_args, training_rows, model, processor)
    train_split = "train_dialogues" if data_args.per_dialogue_training else "train"
    metrics = PreRecognitionMetrics(label_names)
    trainer = TCMPTrainer.for_splits(
        model, training_args, processor, collator, splits, metrics, [TrainingHealthCallback(), *callbacks], train_split=train_split
    )

    results = {}
    if training_args.do_train:
        results.update(train_and_save(trainer))
        if trainer.is_world_process_zero():  # saved as a pipeline too: pipeline(model=folder, trust_remote_code=True)
            EmotionPreRecognitionPipeline(model=trainer.model, processor=processor).save_pretrained(training_args.output_dir)
    table = None
    for split, prefix in final_evaluations(training_args, splits):
        output = evaluate_split(trainer, splits[split], prefix, majority_baseline(train_labels, metrics, prefix))
        results.update(output.metrics)
        if trainer.is_world_process_zero():
            report = write_prerecognition_report(
                training_args.output_dir, prefix, output, metrics, samples[split]["sample_id"]
            )
            table = (prefix, report)
    if table is not None:
        print(f"\nPer-class results of {training_args.output_dir} ({table[0]} split, selected checkpoint):\n{table[1]}\n")

    return finish_run(
        trainer,
        results,
        data_args.dataset,
        "TCMP emotion pre-recognition on " + data_args.dataset,
        FINETUNED,
        {
            "Dataset": f"{describe_dataset(data_args.dataset, data_args.loader_options())}; labels: {', '.join(label_names)}"
            + (f"; cross-validation: fold {data_args.cv_fold} of {data_args.cv_folds} of the training dialogues scored, "
               "the other folds trained on" if data_args.cv_folds else "") + ".",
            "Reconstruction rule": describe_rule(build.rule) + "\n\n" + format_stats(dataset_stats(samples)),
        },
        starting_point(model_args),
        extra=f"Per-class results ({table[0]}):\n\n```\n{table[1]}\n```" if table else "",
    )


if __name__ == "__main__":
    run_as_script(main)
