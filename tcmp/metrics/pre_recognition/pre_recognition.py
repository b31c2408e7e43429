"""Emotion pre-recognition metrics of the TCMP paper: WA, AA and macro-F1, with per-class recall and F1."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
WA (weighted accuracy) is plain accuracy. AA (average accuracy) is the mean per-class recall over the classes that
occur in the references (balanced accuracy; a class absent from the references has no recall and is left out).
F1 is the mean of the per-class F1 scores over all `num_labels` classes (macro F1; a class never predicted and
never referenced scores 0). Also returned: per-class recall (0 for an absent class), per-class F1, per-class
support and the confusion matrix (rows: references, columns: predictions).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): true class ids.
    num_labels (`int`, optional): number of classes C; defaults to 1 + the largest id seen.
Returns:
    wa, aa, f1 (`float`), per_class_recall, per_class_f1 (`list[float]`), support (`list[int]`),
    confusion_matrix (`list[list[int]]`).
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

    def _compute(self, predictions, references, num_labels=None):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if num_labels is None:
            num_labels = int(max(predictions.max(initial=-1), references.max(initial=-1))) + 1
        for name, values in (("predictions", predictions), ("references", references)):
            if values.size and (values.min() < 0 or values.max() >= num_labels):
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
        present = support > 0
        return {
            "wa": float(true_positives.sum() / max(len(references), 1)),
            "aa": float(recall[present].mean()) if present.any() else 0.0,
            "f1": float(f1.mean()),
            "per_class_recall": recall.tolist(),
            "per_class_f1": f1.tolist(),
            "support": support.tolist(),
            "confusion_matrix": matrix.tolist(),
        }
