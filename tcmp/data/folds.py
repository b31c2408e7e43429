"""K-fold cross-validation over the training dialogues: settings are chosen on the training split, never on dev."""

import numpy as np
from datasets import Dataset, DatasetDict

from ..errors import ArgumentsError


def dialogue_folds(dialogue_ids, folds: int, seed: int = 0) -> dict[str, int]:
    """Dialogue id → fold (0 … folds − 1): the distinct ids, sorted, shuffled with `seed`, dealt out in turn, so that
    the folds differ by at most one dialogue and do not depend on the order of the rows."""
    if folds < 2:
        raise ArgumentsError(f"cross-validation needs at least 2 folds, got {folds}")
    distinct = sorted(set(dialogue_ids))
    if len(distinct) < folds:
        raise ArgumentsError(f"{folds} folds need at least {folds} training dialogues; the training split has {len(distinct)}")
    order = np.random.default_rng(seed).permutation(len(distinct))
    return {distinct[i]: position % folds for position, i in enumerate(order)}


def fold_indices(dialogue_ids, folds: int, seed: int = 0) -> list[list[int]]:
    """Per fold, the positions of the rows whose dialogue `dialogue_folds` puts in it."""
    dialogue_ids = list(dialogue_ids)
    assigned = dialogue_folds(dialogue_ids, folds, seed)
    indices = [[] for _ in range(folds)]
    for i, dialogue in enumerate(dialogue_ids):
        indices[assigned[dialogue]].append(i)
    return indices


def cross_validation_splits(train: Dataset, fold: int, folds: int, seed: int = 0) -> DatasetDict:
    """
    `train` as a `DatasetDict` of `train` (the samples of the other folds' dialogues) and `validation` (fold `fold`'s):
    whole dialogues per fold (`fold_indices`), so that no dialogue is on both sides.
    """
    if not 0 <= fold < folds:
        raise ArgumentsError(f"fold {fold} is not one of the {folds} folds (0 … {folds - 1})")
    indices = fold_indices(train["dialogue_id"], folds, seed)
    kept = sorted(i for other, rows in enumerate(indices) if other != fold for i in rows)
    return DatasetDict({"train": train.select(kept), "validation": train.select(indices[fold])})


__all__ = ["dialogue_folds", "fold_indices", "cross_validation_splits"]
