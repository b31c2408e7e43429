"""The metric modules and helpers, against values computed by hand."""

import logging
import math

import numpy as np
import pytest

from tcmp.metrics import (
    class_weights,
    format_per_class_table,
    logit_adjustment,
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


# ----------------------------------------------------------------------------------------------- pre-recognition


def test_pre_recognition_by_hand_with_a_class_never_predicted(pre_recognition):
    # references: 0 0 0 1 1 2 ; predictions: 0 0 1 1 0 0  (class 2 is never predicted)
    result = pre_recognition.compute(predictions=[0, 0, 1, 1, 0, 0], references=[0, 0, 0, 1, 1, 2], num_labels=3)
    assert result["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    assert result["wa"] == pytest.approx(3 / 6)
    # recall: 2/3, 1/2, 0 ; precision: 2/4, 1/2, 0
    assert result["per_class_recall"] == pytest.approx([2 / 3, 1 / 2, 0.0])
    f1_0 = 2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3)  # = 4/7
    assert result["per_class_f1"] == pytest.approx([f1_0, 0.5, 0.0])
    assert result["aa"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert result["f1"] == pytest.approx((4 / 7 + 0.5) / 3)
    assert result["support"] == [3, 2, 1]


def test_class_absent_from_references_is_left_out_of_aa_with_a_warning_but_counts_in_f1(pre_recognition):
    # class 2 never occurs in the references but is predicted once
    with pytest.warns(UserWarning, match=r"classes \[2\] do not occur in the references"):
        result = pre_recognition.compute(predictions=[0, 1, 2, 1], references=[0, 1, 1, 1], num_labels=3)
    assert result["confusion_matrix"] == [[1, 0, 0], [0, 2, 1], [0, 0, 0]]
    assert result["per_class_recall"] == pytest.approx([1.0, 2 / 3, 0.0])
    assert result["aa"] == pytest.approx((1.0 + 2 / 3) / 2)
    f1_1 = 2 * 1.0 * (2 / 3) / (1.0 + 2 / 3)  # precision 2/2, recall 2/3 → 0.8
    assert result["f1"] == pytest.approx((1.0 + f1_1 + 0.0) / 3)
    assert result["support"] == [1, 3, 0]


def test_classes_absent_from_both_count_in_f1_only_when_num_labels_is_given(pre_recognition):
    inferred = pre_recognition.compute(predictions=[0, 1], references=[0, 1])
    assert (inferred["aa"], inferred["f1"], len(inferred["confusion_matrix"])) == (1.0, 1.0, 2)
    with pytest.warns(UserWarning, match=r"\[2, 3\]"):
        given = pre_recognition.compute(predictions=[0, 1], references=[0, 1], num_labels=4)
    assert given["aa"] == 1.0 and given["f1"] == pytest.approx(2 / 4)


def test_label_names_key_the_per_class_results(pre_recognition):
    names = ["negative", "neutral", "positive"]
    result = pre_recognition.compute(predictions=[0, 1, 1], references=[0, 1, 2], label_names=names)
    assert result["per_class_recall"] == {"negative": 1.0, "neutral": 1.0, "positive": 0.0}
    assert result["per_class_f1"] == pytest.approx({"negative": 1.0, "neutral": 2 / 3, "positive": 0.0})
    assert result["support"] == {"negative": 1, "neutral": 1, "positive": 1}
    with pytest.raises(ValueError, match="2 label_names for num_labels=3"):
        pre_recognition.compute(predictions=[0], references=[0], num_labels=3, label_names=names[:2])


def test_batches_accumulate_like_one_call(pre_recognition):
    pre_recognition.add_batch(predictions=[0, 0, 1], references=[0, 0, 0])
    pre_recognition.add_batch(predictions=[1, 0, 0], references=[1, 1, 2])
    assert pre_recognition.compute(num_labels=3)["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]


def test_bad_inputs_are_clear_errors(pre_recognition):
    with pytest.raises(ValueError, match="outside 0..2"):
        pre_recognition.compute(predictions=[0, 3], references=[0, 1], num_labels=3)
    with pytest.raises(ValueError, match="at least one prediction"):
        pre_recognition.compute(predictions=[], references=[], num_labels=3)


# ----------------------------------------------------------------------------------------------- retrieval


def test_retrieval_by_hand_with_ties(retrieval):
    negatives = [
        [0.1] * 10,  # true best everywhere
        [0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],  # one above: rank 2
        [0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],  # a tie counts against: rank 2
        [0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1],  # two above, but only beyond the first 4: top 1 @5
    ]
    result = retrieval.compute(true_scores=[0.5, 0.5, 0.5, 0.5], negative_scores=negatives)
    assert result == pytest.approx({"r1@5": 2 / 4, "r2@5": 4 / 4, "r1@11": 1 / 4, "r2@11": 3 / 4})


def test_retrieval_constant_scores_never_count_as_hits(retrieval):
    result = retrieval.compute(true_scores=[1.0, 1.0], negative_scores=[[1.0] * 10] * 2)
    assert set(result.values()) == {0.0}


def test_retrieval_custom_ks_ns_and_extra_negatives(retrieval):
    # 12 negatives for n = 3: only the first 2 count; the true one is beaten by one of them → rank 2
    result = retrieval.compute(true_scores=[0.5], negative_scores=[[0.1, 0.7] + [0.9] * 10], ks=[1, 2, 3], ns=[3])
    assert result == {"r1@3": 0.0, "r2@3": 1.0}  # k >= n is skipped


def test_retrieval_bad_inputs_are_clear_errors(retrieval):
    with pytest.raises(ValueError, match="at least 10 negatives"):
        retrieval.compute(true_scores=[1.0, 1.0], negative_scores=[[0.0] * 10, [0.0] * 4])
    with pytest.raises(ValueError, match="finite"):
        retrieval.compute(true_scores=[float("nan")], negative_scores=[[0.0] * 10])


# ----------------------------------------------------------------------------------------------- helpers


def sampled_indices(groups, seed, scale=1.0):
    """Negatives' row indices, read back from the scores: targets are one-hot, prediction i scores row j as j + 1."""
    size = len(groups)
    predictions = np.tile(np.arange(1, size + 1, dtype=np.float64) * scale, (size, 1))
    true_scores, negative_scores = sample_retrieval_candidates(predictions, np.eye(size), groups, 10, seed)
    np.testing.assert_allclose(true_scores, (np.arange(size) + 1) * scale)
    return np.rint(negative_scores / scale).astype(int) - 1


def test_candidates_are_seeded_distinct_and_never_from_the_same_dialogue():
    groups = np.repeat(np.arange(8), 5)
    a, b, c = sampled_indices(groups, seed=3), sampled_indices(groups, seed=3), sampled_indices(groups, seed=4)
    assert a.shape == (40, 10)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert (groups[a] != groups[:, None]).all()
    assert all(len(set(row)) == 10 for row in a)
    # another "checkpoint" (other prediction vectors) is scored on the very same candidates
    assert np.array_equal(a, sampled_indices(groups, seed=3, scale=2.0))


def test_scores_are_dot_products():
    predictions = np.array([[1.0, 2.0]] * 11)
    targets = np.array([[3.0, 0.0]] + [[0.0, 1.0]] * 10)
    true_scores, negative_scores = sample_retrieval_candidates(predictions, targets, np.arange(11), 10)
    np.testing.assert_allclose(true_scores, [3.0] + [2.0] * 10)
    np.testing.assert_allclose(negative_scores[0], [2.0] * 10)
    assert sorted(negative_scores[1]) == [2.0] * 9 + [3.0]  # every other row, row 0 among them


def test_candidate_sampling_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="has 3 candidate negatives"):
        sample_retrieval_candidates(np.ones((6, 2)), np.ones((6, 2)), [0, 0, 0, 1, 1, 1], num_negatives=10)
    with pytest.raises(ValueError, match="one shape"):
        sample_retrieval_candidates(np.ones((6, 2)), np.ones((6, 3)), [0] * 6)


def test_class_weights_by_hand(caplog):
    expected = [4 * 3 / 7, 2 * 3 / 7, 1 * 3 / 7]  # counts 1, 2, 4 → ∝ 4, 2, 1, summing to 3
    assert class_weights([0, 1, 1, 2, 2, 2, 2], num_labels=3) == pytest.approx(expected)
    assert class_weights(counts=[1, 2, 4]) == pytest.approx(expected)
    with caplog.at_level(logging.WARNING, logger="tcmp.metrics"):
        # counts 2, 0, 1 → 1/2, 0, 1 → times 3 / 1.5
        assert class_weights([0, 0, 2], num_labels=3) == pytest.approx([1.0, 0.0, 2.0])
    assert "classes [1] never occur" in caplog.text
    # power 0.5: ∝ 1, 1/√2, 1/2 (counts 1, 2, 4), summing to 3; power 0: the plain loss
    root = [1, 2**-0.5, 0.5]
    assert class_weights(counts=[1, 2, 4], power=0.5) == pytest.approx([3 * w / sum(root) for w in root])
    assert class_weights(counts=[1, 2, 4], power=0) == pytest.approx([1.0, 1.0, 1.0])


def test_logit_adjustment_by_hand(caplog):
    # priors 1/7, 2/7, 4/7 → τ log of them
    assert logit_adjustment([0, 1, 1, 2, 2, 2, 2], 3, tau=0.5) == pytest.approx([0.5 * math.log(p / 7) for p in (1, 2, 4)])
    with caplog.at_level(logging.WARNING, logger="tcmp.metrics"):
        # class 1 never occurs: half a sample, priors 2/3.5, 0.5/3.5, 1/3.5
        assert logit_adjustment([0, 0, 2], 3) == pytest.approx([math.log(c / 3.5) for c in (2, 0.5, 1)])
    assert "classes [1] never occur" in caplog.text
    with pytest.raises(ValueError, match="outside 0..2"):
        logit_adjustment([0, 3], 3)
    with pytest.raises(ValueError, match="at least one label"):
        logit_adjustment([], 3)


def test_class_weights_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="outside 0..2"):
        class_weights([0, 1, 3], num_labels=3)
    with pytest.raises(ValueError, match="exactly one"):
        class_weights([0, 1], num_labels=2, counts=[1, 1])
    with pytest.raises(ValueError, match="2 counts for num_labels=3"):
        class_weights(counts=[1, 1], num_labels=3)


def test_table_and_confusion_png(pre_recognition, tmp_path):
    import matplotlib.image

    names = ["negative", "neutral", "positive"]
    as_lists = pre_recognition.compute(predictions=[0, 1, 1], references=[0, 1, 2], num_labels=3)
    as_dicts = pre_recognition.compute(predictions=[0, 1, 1], references=[0, 1, 2], label_names=names)
    table = format_per_class_table(as_lists, names)
    assert table == format_per_class_table(as_dicts, names)
    assert "neutral         1   1.000   0.667" in table and "WA 0.667   AA 0.667   F1 0.556" in table

    path = plot_confusion_matrix(as_lists["confusion_matrix"], names, str(tmp_path / "cm.png"), title="dev")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= 300
