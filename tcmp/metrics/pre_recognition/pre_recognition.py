"""Emotion pre-recognition metrics of the TCMP paper: WA, AA and macro-F1, with per-class recall and F1."""

import warnings

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
Over the C classes (C = `num_labels`, else len(`label_names`), else 1 + the largest id seen):

- WA (weighted accuracy): plain accuracy.
- AA (average accuracy): mean per-class recall, as sklearn's `balanced_accuracy_score`: a class absent from the
  references has no recall and is left out of the mean, with a warning (its `per_class_recall` entry is 0).
- F1: mean of the per-class F1 scores over all C classes, as sklearn's
  `f1_score(average="macro", labels=range(C), zero_division=0)`: a class never predicted, or absent from the
  references, scores 0 and still counts. Classes absent from both only count when C is given, not inferred.

Also returned: per-class recall, F1 and support (lists, or dicts by label name when `label_names` is given) and the
confusion matrix (rows: references, columns: predictions).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): true class ids.
    num_labels (`int`, optional): number of classes C.
    label_names (`list[str]`, optional): one name per class; keys the per-class results.
Returns:
    wa, aa, f1 (`float`); per_class_recall, per_class_f1 (`list[float]` or `dict[str, float]`);
    support (`list[int]` or `dict[str, int]`); confusion_matrix (`list[list[int]]`).
Example:
    >>> metric = evaluate.load("tcmp/metrics/pre_recognition")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 2], num_labels=3)["wa"]
    0.6666666666666666
"""


class PreRecognition(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Ju et al., Real-time Emotion Pre-Recognition in Conversations, CIKM 2023",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, num_labels=None, label_names=None):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if references.size == 0:
            raise ValueError("pre_recognition needs at least one prediction")
        if num_labels is None and label_names is not None:
            num_labels = len(label_names)
        elif num_labels is None:
            num_labels = int(max(predictions.max(), references.max())) + 1
        if label_names is not None and len(label_names) != num_labels:
            raise ValueError(f"{len(label_names)} label_names for num_labels={num_labels}")
        for name, values in (("predictions", predictions), ("references", references)):
            if values.min() < 0 or values.max() >= num_labels:
                raise ValueError(f"{name} hold class ids outside 0..{num_labels - 1}: {sorted(set(values.tolist()))}")

        matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
        np.add.at(matrix, (references, predictions), 1)
        true_positives = np.diag(matrix).astype(np.float64)
        support = matrix.sum(axis=1)
        predicted = matrix.sum(axis=0)
        recall = np.divide(true_positives, support, out=np.zeros(num_labels), where=support > 0)
        precision = np.divide(true_positives, predicted, out=np.zeros(num_labels), where=predicted > 0)
        denominator = precision + recall
        f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(num_labels), where=denominator > 0)

        absent = np.flatnonzero(support == 0)
        if len(absent):
            names = [label_names[i] for i in absent] if label_names is not None else absent.tolist()
            warnings.warn(f"classes {names} do not occur in the references: left out of AA (F1 counts them as 0)")

        def per_class(values):
            return dict(zip(label_names, values)) if label_names is not None else values

        return {
            "wa": float(true_positives.sum() / len(references)),
            "aa": float(recall[support > 0].mean()),
            "f1": float(f1.mean()),
            "per_class_recall": per_class(recall.tolist()),
            "per_class_f1": per_class(f1.tolist()),
            "support": per_class(support.tolist()),
            "confusion_matrix": matrix.tolist(),
        }
