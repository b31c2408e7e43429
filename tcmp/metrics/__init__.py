"""TCMP metrics as local `evaluate` modules (nothing is fetched from a hub), and helpers the scripts use."""

import logging
import os

import numpy as np


logger = logging.getLogger(__name__)

METRICS_DIR = os.path.dirname(os.path.abspath(__file__))
METRIC_NAMES = ("pre_recognition", "forthcoming_retrieval")


def load_metric(name: str):
    """`evaluate.load` of a metric module shipped in this package: "pre_recognition" or "forthcoming_retrieval"."""
    import evaluate

    if name not in METRIC_NAMES:
        raise ValueError(f"unknown TCMP metric {name!r}; choose one of {METRIC_NAMES}")
    return evaluate.load(os.path.join(METRICS_DIR, name))


def sample_retrieval_candidates(predictions, targets, group_ids, num_negatives: int = 10, seed: int = 0):
    """
    Score every prediction e_t (P, d) against its true next utterance (`targets`, P × d) and `num_negatives`
    negatives drawn with `seed` among the targets of other dialogues (`group_ids`), by dot product. The same inputs
    and seed always give the same candidate sets, so figures compare across runs and checkpoints.
    Returns (true_scores (P,), negative_scores (P, num_negatives)).
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    group_ids = np.asarray(group_ids)
    rng = np.random.default_rng(seed)
    pools = {group: np.flatnonzero(group_ids != group) for group in np.unique(group_ids)}
    negative_index = np.empty((len(predictions), num_negatives), dtype=np.int64)
    for i, group in enumerate(group_ids):
        pool = pools[group]
        if len(pool) < num_negatives:
            raise ValueError(
                f"prediction {i} (dialogue {group}) has {len(pool)} candidate negatives from other dialogues, "
                f"{num_negatives} are needed: evaluate on more dialogues"
            )
        negative_index[i] = pool[rng.choice(len(pool), size=num_negatives, replace=False)]
    true_scores = np.einsum("pd,pd->p", predictions, targets)
    negative_scores = np.einsum("pd,pnd->pn", predictions, targets[negative_index])
    return true_scores, negative_scores


def class_weights(labels, num_labels: int) -> list[float]:
    """
    Loss weights from the TRAINING split's labels: weight_c ∝ 1 / count_c, normalised to sum to C. A class that
    never occurs gets weight 0 (with a warning) and the others share the sum.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_labels)[:num_labels].astype(np.float64)
    if counts.sum() == 0:
        raise ValueError("class_weights needs at least one training label")
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        logger.warning("classes %s never occur in the training labels: their loss weight is 0", missing.tolist())
    inverse = np.divide(1.0, counts, out=np.zeros(num_labels), where=counts > 0)
    return (inverse * num_labels / inverse.sum()).tolist()


def format_per_class_table(result: dict, label_names) -> str:
    """A table of per-class support, recall and F1, then WA / AA / F1."""
    width = max(len("class"), *(len(name) for name in label_names))
    lines = [f"{'class':<{width}}  support  recall      f1", "-" * (width + 25)]
    for i, name in enumerate(label_names):
        lines.append(
            f"{name:<{width}}  {result['support'][i]:>7}  {result['per_class_recall'][i]:>6.3f}  "
            f"{result['per_class_f1'][i]:>6.3f}"
        )
    lines.append("-" * (width + 25))
    lines.append(f"WA {result['wa']:.3f}   AA {result['aa']:.3f}   F1 {result['f1']:.3f}")
    return "\n".join(lines)


def plot_confusion_matrix(matrix, label_names, path: str, title: str = "") -> str:
    """Write the confusion matrix (rows: true, columns: predicted) as a PNG; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    size = max(3.5, 0.8 * len(label_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    axes.set_yticks(range(len(label_names)), label_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), value in np.ndenumerate(matrix):
        axes.text(column, row, str(value), ha="center", va="center", color="white" if value > threshold else "black")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
