"""
What the training scripts share, by concern: `arguments` (flags and their parsing), `setup` (model, processor, data
and collator), `trainer` (the Trainer, callbacks, train/evaluate/finish steps) and `reports` (per-class report,
confusion matrix, model card). The `compute_metrics` of both tasks are in `tcmp.metrics`.
"""

from .arguments import (
    PLATEAU_DECAY,
    DataArguments,
    FinetuningDataArguments,
    FinetuningArguments,
    ModelArguments,
    PretrainingArguments,
    PretrainingDataArguments,
    TCMPTrainingArguments,
    check_selection_metric,
    parse_arguments,
)
from .reports import (
    FINETUNED,
    PRETRAINED,
    describe_dataset,
    describe_rule,
    display_name,
    model_card,
    write_prerecognition_report,
)
from .setup import (
    build_model_and_processor,
    check_checkpoint_flags,
    check_splits,
    data_collator,
    loading,
    starting_point,
    training_texts,
)
from .trainer import (
    DiskSpaceCallback,
    FrozenWeightsCallback,
    SetEpochCallback,
    TCMPPreTrainer,
    TCMPTrainer,
    evaluate_split,
    final_evaluations,
    finish_run,
    parameter_groups,
    selection_callbacks,
    train_and_save,
)


__all__ = [
    "PLATEAU_DECAY", "DataArguments", "FinetuningArguments", "FinetuningDataArguments", "ModelArguments", "PretrainingArguments",
    "PretrainingDataArguments", "TCMPTrainingArguments", "check_selection_metric", "parse_arguments",
    "FINETUNED", "PRETRAINED", "describe_dataset", "describe_rule", "display_name", "model_card",
    "write_prerecognition_report", "build_model_and_processor", "check_checkpoint_flags",
    "check_splits", "data_collator", "loading", "starting_point",
    "training_texts", "DiskSpaceCallback", "FrozenWeightsCallback", "SetEpochCallback", "TCMPPreTrainer", "TCMPTrainer", "evaluate_split",
    "final_evaluations", "finish_run", "parameter_groups", "selection_callbacks", "train_and_save",
]
