"""Forthcoming-utterance retrieval of TCMP pre-training: R_k@n."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
R_k@n is the fraction of predictions whose true next utterance ranks in the top k among n candidates: the true one
and the FIRST n-1 of its negatives (so R_k@5 and R_k@11 share candidates). A negative scoring exactly as high as
the true candidate ranks above it: ties count against the prediction, so constant scores never look good.
"""

_KWARGS_DESCRIPTION = """
Args:
    true_scores (`list[float]`): score of the true next utterance, one per prediction.
    negative_scores (`list[list[float]]`): scores of the negatives of each prediction, at least max(ns) - 1 each
        (extra ones are ignored).
    ks (`list[int]`, optional): defaults to (1, 2).
    ns (`list[int]`, optional): defaults to (5, 11).
Returns:
    `r{k}@{n}` (`float`) for every k in ks and n in ns with k < n: r1@5, r2@5, r1@11, r2@11 by default.
Example:
    >>> metric = evaluate.load("tcmp/metrics/forthcoming_retrieval")
    >>> metric.compute(true_scores=[0.5], negative_scores=[[0.9] + [0.1] * 9])
    {'r1@5': 0.0, 'r2@5': 1.0, 'r1@11': 0.0, 'r2@11': 1.0}
"""


class ForthcomingRetrieval(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Ju et al., Real-time Emotion Pre-Recognition in Conversations, CIKM 2023",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "true_scores": datasets.Value("float64"),
                    "negative_scores": datasets.Sequence(datasets.Value("float64")),
                }
            ),
        )

    def _compute(self, true_scores, negative_scores, ks=(1, 2), ns=(5, 11)):
        if not len(true_scores):
            raise ValueError("forthcoming_retrieval needs at least one prediction")
        if min(ks) < 1 or min(ns) < 2:
            raise ValueError(f"need k >= 1 and n >= 2, got ks={ks}, ns={ns}")
        needed = max(ns) - 1
        shortest = min(len(row) for row in negative_scores)
        if shortest < needed:
            raise ValueError(f"R_k@{max(ns)} needs at least {needed} negatives per prediction, some have {shortest}")
        true_scores = np.asarray(true_scores, dtype=np.float64)
        negatives = np.array([row[:needed] for row in negative_scores], dtype=np.float64)
        if not (np.isfinite(true_scores).all() and np.isfinite(negatives).all()):
            raise ValueError("scores must be finite (a NaN true score would otherwise rank first)")
        results = {}
        for n in ns:
            rank = (negatives[:, : n - 1] >= true_scores[:, None]).sum(axis=1)
            for k in ks:
                if k < n:
                    results[f"r{k}@{n}"] = float((rank < k).mean())
        return results
