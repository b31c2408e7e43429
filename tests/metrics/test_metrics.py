"""The metric modules and helpers, against values computed by hand."""

import numpy as np
import pytest

from tcmp.metrics import (
    class_weights,
    format_per_class_table,
    load_metric,
    plot_confusion_matrix,
    sample_retrieval_candidates,
)


@pytest.fixture(scope="module")
def pre_recognition():
    return load_metric("pre_recognition")


@pytest.fixture(scope="module")
def retrieval():
    return load_metric("forthcoming_retrieval")


def test_pre_recognition_by_hand(pre_recognition):
    # references: 0 0 0 1 1 2 ; predictions: 0 0 1 1 0 0  (class 2 is never predicted)
    result = pre_recognition.compute(predictions=[0, 0, 1, 1, 0, 0], references=[0, 0, 0, 1, 1, 2], num_labels=3)
    assert result["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    assert result["wa"] == pytest.approx(3 / 6)
    # recall: 2/3, 1/2, 0 ; precision: 2/4, 1/2, 0
    assert result["per_class_recall"] == pytest.approx([2 / 3, 1 / 2, 0.0])
    f1_0 = 2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3)
    assert result["per_class_f1"] == pytest.approx([f1_0, 0.5, 0.0])
    assert result["aa"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert result["f1"] == pytest.approx((f1_0 + 0.5) / 3)
    assert result["support"] == [3, 2, 1]


def test_class_absent_from_references_is_left_out_of_aa_but_counts_in_f1(pre_recognition):
    # class 2 never occurs in the references but is predicted once
    result = pre_recognition.compute(predictions=[0, 1, 2, 1], references=[0, 1, 1, 1], num_labels=3)
    assert result["per_class_recall"] == pytest.approx([1.0, 2 / 3, 0.0])
    assert result["aa"] == pytest.approx((1.0 + 2 / 3) / 2)
    f1_1 = 2 * 1.0 * (2 / 3) / (1.0 + 2 / 3)
    assert result["f1"] == pytest.approx((1.0 + f1_1 + 0.0) / 3)
    assert result["support"] == [1, 3, 0]


def test_out_of_range_ids_are_a_clear_error(pre_recognition):
    with pytest.raises(ValueError, match="outside 0..2"):
        pre_recognition.compute(predictions=[0, 3], references=[0, 1], num_labels=3)


def test_retrieval_by_hand_with_ties(retrieval):
    negatives = [
        [0.1] * 10,  # true best everywhere
        [0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],  # one above: rank 2
        [0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],  # a tie counts against: rank 2
        [0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1],  # two above, but only beyond the first 4: top 1 @5
    ]
    result = retrieval.compute(true_scores=[0.5, 0.5, 0.5, 0.5], negative_scores=negatives)
    assert result["r1@5"] == pytest.approx(2 / 4)
    assert result["r2@5"] == pytest.approx(4 / 4)
    assert result["r1@11"] == pytest.approx(1 / 4)
    assert result["r2@11"] == pytest.approx(3 / 4)


def test_retrieval_needs_enough_negatives(retrieval):
    with pytest.raises(ValueError, match="at least 10 negatives"):
        retrieval.compute(true_scores=[1.0], negative_scores=[[0.0] * 4])


def test_candidate_sampling_is_seeded_and_never_from_the_same_dialogue():
    rng = np.random.default_rng(0)
    predictions, targets = rng.standard_normal((40, 4)), rng.standard_normal((40, 4))
    groups = np.repeat(np.arange(8), 5)
    a = sample_retrieval_candidates(predictions, targets, groups, num_negatives=10, seed=3)
    b = sample_retrieval_candidates(predictions, targets, groups, num_negatives=10, seed=3)
    c = sample_retrieval_candidates(predictions, targets, groups, num_negatives=10, seed=4)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])
    assert np.allclose(a[0], (predictions * targets).sum(axis=1))
    # each negative score equals the dot product with some target of another dialogue
    for i in range(40):
        others = targets[groups != groups[i]] @ predictions[i]
        own = targets[groups == groups[i]] @ predictions[i]
        for score in a[1][i]:
            assert np.isclose(others, score).any() and not np.isclose(own, score).any()


def test_candidate_sampling_with_too_few_dialogues_is_a_clear_error():
    with pytest.raises(ValueError, match="has 3 candidate negatives"):
        sample_retrieval_candidates(np.ones((6, 2)), np.ones((6, 2)), [0, 0, 0, 1, 1, 1], num_negatives=10)


def test_class_weights_by_hand():
    weights = class_weights([0, 1, 1, 2, 2, 2, 2], num_labels=3)  # counts 1, 2, 4 → ∝ 4, 2, 1
    assert weights == pytest.approx([4 * 3 / 7, 2 * 3 / 7, 1 * 3 / 7])
    assert sum(weights) == pytest.approx(3)
    assert class_weights([0, 0, 2], num_labels=3) == pytest.approx([1.0, 0.0, 2.0])


def test_table_and_confusion_png(pre_recognition, tmp_path):
    result = pre_recognition.compute(predictions=[0, 1, 1], references=[0, 1, 2], num_labels=3)
    table = format_per_class_table(result, ["negative", "neutral", "positive"])
    assert "positive" in table and "WA 0.667" in table
    path = plot_confusion_matrix(result["confusion_matrix"], ["negative", "neutral", "positive"], str(tmp_path / "cm.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
