"""Cross-validation folds over the training dialogues: whole dialogues, balanced, independent of the rows' order."""

import pytest
from datasets import Dataset

from tcmp.data.folds import cross_validation_splits, dialogue_folds, fold_indices
from tcmp.errors import ArgumentsError


def rows(dialogues: int, per_dialogue: int = 3) -> Dataset:
    ids = [f"d{d}" for d in range(dialogues) for _ in range(per_dialogue)]
    return Dataset.from_dict({"sample_id": [f"{d}_{i}" for i, d in enumerate(ids)], "dialogue_id": ids})


def test_folds_are_whole_dialogues_balanced_and_do_not_depend_on_the_rows_order():
    ids = [f"d{d}" for d in range(10) for _ in range(3)]
    assigned = dialogue_folds(ids, 3)
    sizes = sorted(list(assigned.values()).count(f) for f in range(3))
    assert sizes == [3, 3, 4]
    assert dialogue_folds(list(reversed(ids)), 3) == assigned
    assert dialogue_folds(ids, 3, seed=1) != assigned  # another seed, another deal
    for fold, positions in enumerate(fold_indices(ids, 3)):
        assert {assigned[ids[i]] for i in positions} == {fold}


def test_each_fold_scores_its_dialogues_and_trains_on_all_the_others():
    train = rows(7)
    seen = []
    for fold in range(3):
        split = cross_validation_splits(train, fold, 3)
        held_out, kept = set(split["validation"]["dialogue_id"]), set(split["train"]["dialogue_id"])
        assert held_out and not held_out & kept and held_out | kept == set(train["dialogue_id"])
        assert len(split["train"]) + len(split["validation"]) == len(train)
        seen += split["validation"]["sample_id"]
    assert sorted(seen) == sorted(train["sample_id"])  # every sample scored exactly once


@pytest.mark.parametrize("fold, folds, message", [
    (0, 1, "at least 2 folds"), (3, 3, "fold 3 is not one of the 3 folds"), (0, 9, "9 folds need at least 9"),
])
def test_bad_folds_are_named(fold, folds, message):
    with pytest.raises(ArgumentsError, match=message):
        cross_validation_splits(rows(4), fold, folds)
