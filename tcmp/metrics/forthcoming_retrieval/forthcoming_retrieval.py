"""Forthcoming-utterance retrieval of TCMP pre-training: R_k@n."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
R_k@n is the fraction of predictions whose true next utterance ranks in the top k among n candidates: the true one
and the first n-1 of its negatives. A negative scoring exactly as high as the true candidate ranks above it (ties
count against the prediction).
"""

_KWARGS_DESCRIPTION = """
Args:
    true_scores (`list[float]`): score of the true next utterance, one per prediction.
    negative_scores (`list[list[float]]`): scores of the negatives of each prediction (at least max(ns) - 1).
    ks (`list[int]`, optional): defaults to (1, 2).
    ns (`list[int]`, optional): defaults to (5, 11).
Returns:
    `r{k}@{n}` for every k < n: r1@5, r2@5, r1@11, r2@11 by default.
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
        true_scores = np.asarray(true_scores, dtype=np.float64)
        negatives = np.asarray(negative_scores, dtype=np.float64)
        if negatives.ndim != 2 or negatives.shape[1] < max(ns) - 1:
            raise ValueError(f"R_k@{max(ns)} needs at least {max(ns) - 1} negatives per prediction, got shape {negatives.shape}")
        results = {}
        for n in ns:
            rank = (negatives[:, : n - 1] >= true_scores[:, None]).sum(axis=1)
            for k in ks:
                if k < n:
                    results[f"r{k}@{n}"] = float((rank < k).mean()) if len(rank) else 0.0
        return results
