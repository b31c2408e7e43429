"""What a run writes besides checkpoints and metrics: the per-class report, the confusion matrix and the model card."""

import json
import os

import numpy as np
import torch

from ..metrics import PreRecognitionMetrics, format_per_class_table, plot_confusion_matrix
from .arguments import TCMPTrainingArguments, model_settings


def write_prerecognition_report(
    output_dir: str, split: str, prediction_output, metrics: PreRecognitionMetrics, sample_ids: list[str]
) -> str:
    """
    Per-class table (returned, and written to `{split}_per_class.txt`), `{split}_confusion_matrix.png` and
    `{split}_predictions.jsonl`: a line per sample (in the split's order) with its `sample_id`, `label`, `prediction`
    and class `probabilities`, e.g. to ensemble runs or compare them sample by sample.
    """
    logits = prediction_output.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    predictions = np.argmax(logits, axis=-1)
    result = metrics.compute(predictions, prediction_output.label_ids)
    probabilities = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).tolist()
    with open(os.path.join(output_dir, f"{split}_predictions.jsonl"), "w", encoding="utf-8") as handle:
        for sample_id, label, prediction, row in zip(
            sample_ids, prediction_output.label_ids, predictions, probabilities, strict=True
        ):
            handle.write(json.dumps({
                "sample_id": sample_id, "label": metrics.label_names[int(label)],
                "prediction": metrics.label_names[int(prediction)],
                "probabilities": dict(zip(metrics.label_names, (round(p, 6) for p in row))),
            }) + "\n")
    table = format_per_class_table(result, metrics.label_names)
    with open(os.path.join(output_dir, f"{split}_per_class.txt"), "w", encoding="utf-8") as handle:
        handle.write(table + "\n")
    plot_confusion_matrix(
        result["confusion_matrix"],
        metrics.label_names,
        os.path.join(output_dir, f"{split}_confusion_matrix.png"),
        title=f"{split}: WA {result['wa']:.3f}  AA {result['aa']:.3f}  F1 {result['f1']:.3f}",
    )
    return table


def describe_rule(rule) -> str:
    """The reconstruction rule of a build's report (`BuildReport.rule`), in words."""
    return rule.describe() if rule is not None else "not recorded by the dataset build"


FINETUNED = (
    "TCMP (Ju et al., CIKM 2023) emotion pre-recognition: the emotion of the next utterance of a conversation, "
    "predicted from the earlier ones only. Load it with `import tcmp` and the Auto classes, or with "
    "`trust_remote_code=True`."
)
PRETRAINED = (
    "TCMP (Ju et al., CIKM 2023) pre-trained on unlabelled dialogues with text–audio matching and forthcoming-utterance "
    "prediction; it predicts no emotion yet: fine-tune it for emotion pre-recognition (`run_finetune.py "
    "--model_name_or_path`). Load it with `import tcmp` and the Auto classes, or with `trust_remote_code=True`."
)


def model_card(
    title: str, about: str, sections: dict[str, str], start: str, model, args: TCMPTrainingArguments, results: dict,
    extra: str = "",
) -> str:
    """A model card (`README.md`): what the model is (`about`), its data `sections` (heading → text), the starting
    point, the settings and the eval/test results."""
    config = model.config
    results = {
        name: value for name, value in results.items()
        if name.startswith(("eval_", "test_")) and not name.endswith(("_runtime", "_per_second"))
    }
    encoders = ", ".join(
        f"{kind}: {sub.model_type} ({sub.num_hidden_layers} layers, width {sub.hidden_size})"
        for kind, sub in (("text", config.text_config), ("audio", config.audio_config))
        if sub is not None
    )
    settings = {
        "starting point": start,
        "encoders": encoders,
        **model_settings(config),
        "learning rate (new layers / encoders)": f"{args.learning_rate:g} / {args.encoder_learning_rate:g}",
        "optimizer": f"{getattr(args.optim, 'value', args.optim)}, weight decay {args.weight_decay:g}, clipping {args.max_grad_norm:g}",
        "LR schedule": f"{getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)} {args.lr_scheduler_kwargs or ''}",
        "batch size per device × accumulation": f"{args.per_device_train_batch_size} × {args.gradient_accumulation_steps}",
        "epochs (max) / early-stopping patience": f"{args.num_train_epochs:g} / {args.early_stopping_patience}",
        "model selection": f"dev {args.metric_for_best_model}",
        "seed": args.seed,
    }
    lines = [
        "---",
        "library_name: transformers",
        "tags: [tcmp, emotion-pre-recognition, multimodal]",
        "---",
        "",
        f"# {title}",
        "",
        about,
        "",
        *[line for heading, text in sections.items() for line in (f"## {heading}", "", text, "")],
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in settings.items()],
        "",
        "## Results",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value:.4f} |" if isinstance(value, float) else f"| {name} | {value} |" for name, value in results.items()],
        "",
    ]
    if extra:
        lines += [extra, ""]
    return "\n".join(lines)
