"""`compute_metrics` of the two tasks: pre-recognition (WA, AA, F1) and forthcoming-utterance retrieval."""

import numpy as np

from ..configuration_tcmp import STREAMS
from ..metrics import load_metric, sample_retrieval_candidates


class PreRecognitionMetrics:
    """`compute_metrics` for fine-tuning: WA, AA, macro-F1, per-class recall/F1 (named by label) and the number of
    distinct classes predicted (`predicted_classes`: 1 is a collapsed model, see `tcmp.training.health`)."""

    def __init__(self, label_names: list[str]):
        self.label_names = list(label_names)
        self.metric = load_metric("pre_recognition")

    def compute(self, predictions: np.ndarray, references: np.ndarray) -> dict:
        """The metric module's full result (with per-class lists and the confusion matrix)."""
        return self.metric.compute(
            predictions=predictions, references=references, num_labels=len(self.label_names)
        )

    def __call__(self, eval_pred) -> dict:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        predictions = np.argmax(logits, axis=-1)
        result = self.compute(predictions, eval_pred.label_ids)
        scores = {name: float(result[name]) for name in ("wa", "aa", "f1")}
        scores["predicted_classes"] = len(np.unique(predictions))
        for i, label in enumerate(self.label_names):
            scores[f"recall_{label}"] = float(result["per_class_recall"][i])
            scores[f"f1_{label}"] = float(result["per_class_f1"][i])
        return scores


class RetrievalMetrics:
    """`compute_metrics` for pre-training: R1@5, R2@5, R1@11, R2@11 per stream over seeded candidate sets."""

    def __init__(self, streams, num_negatives: int = 10, seed: int = 0):
        self.streams = list(streams)
        self.num_negatives = num_negatives
        self.seed = seed
        self.metric = load_metric("forthcoming_retrieval")

    def __call__(self, eval_pred) -> dict:
        predicted, target = eval_pred.predictions
        groups = eval_pred.label_ids
        keep = groups != -100
        scores = {}
        for stream in self.streams:
            slot = STREAMS.index(stream)
            true_scores, negative_scores = sample_retrieval_candidates(
                predicted[keep][:, slot], target[keep][:, slot], groups[keep], self.num_negatives, self.seed
            )
            result = self.metric.compute(true_scores=true_scores, negative_scores=negative_scores)
            scores.update({f"{stream}_{name}": float(value) for name, value in result.items()})
        return scores


def majority_baseline(train_labels, metrics: PreRecognitionMetrics, prefix: str):
    """`extra_metrics` for `evaluate_split`: WA/AA/F1 of always predicting the most frequent training label."""
    majority = int(np.bincount(np.asarray(train_labels), minlength=len(metrics.label_names)).argmax())

    def scores(output) -> dict:
        result = metrics.compute(np.full_like(output.label_ids, majority), output.label_ids)
        return {f"{prefix}_majority_{name}": float(result[name]) for name in ("wa", "aa", "f1")}

    return scores
