"""
TCMP metrics, in one place: the local `evaluate` modules (nothing is fetched from a hub), the `compute_metrics` of
the two tasks (pre-recognition WA/AA/F1, forthcoming-utterance retrieval R_k@n), class weights, and the per-class
table and confusion-matrix plot of the reports.
"""

import logging
import os

import numpy as np

from ..configuration_tcmp import STREAMS


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
    Score every prediction e_t (P × d) against its true next utterance (`targets`, P × d) and `num_negatives`
    negatives drawn with `numpy.random.default_rng(seed)`, without replacement, among the targets of OTHER dialogues
    (`group_ids`, one per prediction), by dot product. The candidate sets depend only on `group_ids`, `num_negatives`
    and `seed` (not on the vectors), so figures compare across runs and checkpoints.
    Returns (true_scores (P,), negative_scores (P, num_negatives)).
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    group_ids = np.asarray(group_ids)
    if predictions.ndim != 2 or predictions.shape != targets.shape or group_ids.shape != predictions.shape[:1]:
        raise ValueError(
            f"need predictions and targets of one shape (P, d) and P group ids, got {predictions.shape}, "
            f"{targets.shape} and {group_ids.shape}"
        )
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


def class_weights(labels=None, num_labels: int | None = None, *, counts=None, power: float = 1.0) -> list[float]:
    """
    Loss weights weight_c ∝ 1 / count_c ** `power` (1: balanced, 0.5: the square root of it, 0: all equal),
    normalised to sum to C = `num_labels`, from the class ids `labels` or the per-class `counts`. Pass the TRAINING split only (counting dev/test too would leak them into training). A class
    that never occurs gets weight 0, with a warning, and the other classes share the sum C.
    """
    if (labels is None) == (counts is None):
        raise ValueError("pass exactly one of labels and counts")
    if counts is None:
        labels = np.asarray(labels, dtype=np.int64)
        if num_labels is None:
            raise ValueError("num_labels is needed with labels (classes may be missing from them)")
        if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
            raise ValueError(f"labels hold class ids outside 0..{num_labels - 1}: {sorted(set(labels.tolist()))}")
        counts = np.bincount(labels, minlength=num_labels)
    counts = np.asarray(counts, dtype=np.float64)
    if num_labels is not None and len(counts) != num_labels:
        raise ValueError(f"{len(counts)} counts for num_labels={num_labels}")
    if counts.sum() <= 0 or (counts < 0).any():
        raise ValueError(f"class_weights needs non-negative counts and at least one label, got {counts.tolist()}")
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        logger.warning("classes %s never occur in the training labels: their loss weight is 0", missing.tolist())
    inverse = np.divide(1.0, counts**power, out=np.zeros(len(counts)), where=counts > 0)
    return (inverse * len(counts) / inverse.sum()).tolist()


def logit_adjustment(labels, num_labels: int, tau: float = 1.0) -> list[float]:
    """
    τ · log(prior_c) per class, the priors counted on the class ids `labels` (the TRAINING split only): the offsets
    of the logit-adjusted loss (`TCMPForEmotionPreRecognition.set_logit_adjustment`). A class that never occurs
    counts as half a sample, with a warning, so that its offset stays finite.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        raise ValueError("logit_adjustment needs at least one label")
    if labels.min() < 0 or labels.max() >= num_labels:
        raise ValueError(f"labels hold class ids outside 0..{num_labels - 1}: {sorted(set(labels.tolist()))}")
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        logger.warning("classes %s never occur in the training labels: counted as half a sample", missing.tolist())
    counts[missing] = 0.5
    return (tau * np.log(counts / counts.sum())).tolist()


def format_per_class_table(result: dict, label_names) -> str:
    """A table of per-class support, recall and F1 from a `pre_recognition` result, then WA / AA / F1."""

    def column(key):
        values = result[key]
        return [values[name] for name in label_names] if isinstance(values, dict) else list(values)

    support, recall, f1 = column("support"), column("per_class_recall"), column("per_class_f1")
    width = max(len("class"), *(len(str(name)) for name in label_names))
    rule = "-" * (width + 25)
    lines = [f"{'class':<{width}}  support  recall      f1", rule]
    for name, count, r, f in zip(label_names, support, recall, f1):
        lines.append(f"{name:<{width}}  {count:>7}  {r:>6.3f}  {f:>6.3f}")
    lines += [rule, f"WA {result['wa']:.3f}   AA {result['aa']:.3f}   F1 {result['f1']:.3f}"]
    return "\n".join(lines)


def plot_confusion_matrix(matrix, label_names, path: str, title: str = "") -> str:
    """Write the confusion matrix (rows: true, columns: predicted; counts) as a PNG; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    if matrix.shape != (len(label_names), len(label_names)):
        raise ValueError(f"a {matrix.shape} matrix for {len(label_names)} label names")
    size = max(3.5, 0.8 * len(label_names) + 2)
    figure = Figure(figsize=(size, size))
    FigureCanvasAgg(figure)  # Agg, without touching pyplot's global backend
    axes = figure.add_subplot()
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
    return path


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
    """`compute_metrics` for pre-training: R1@5, R2@5, R1@11, R2@11 per modality stream over seeded candidate sets."""

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
