"""The overlap of a pre-training corpus with evaluation data: counting it, and cutting it out of `build umd`."""

import json

import pytest
from datasets import load_from_disk

from tcmp.data import DataError, build_umd, find_overlap, load_pretraining_dataset
from tcmp.data.overlap import evaluation_part, exclude_overlap, normalise_utterance, shared_key

from .conftest import write_meld_csv

# MELD dev dialogue 0 (the evaluation data): one utterance of >= 4 words is in the pre-training corpus
DEV_ROWS = [
    ("I can’t believe it, Joey!", "A", "surprise", "positive", 0, 0),
    ("What?", "B", "neutral", "neutral", 0, 1),
    ("We are going to the beach tomorrow", "A", "joy", "positive", 0, 2),
    ("Oh my God!", "B", "surprise", "positive", 1, 0),
]
EPISODE = ["Hello there.", "i CANT believe it ... joey", "Oh my God!", "Sit down, please.", "Where is my coffee?",
           "It is on the table.", "Thanks a lot, man."]


def utterances(texts, prefix):
    return [{"id": f"{prefix}_u{i}", "text": text, "speaker": "AB"[i % 2]} for i, text in enumerate(texts)]


@pytest.fixture
def corpora(tmp_path):
    """A pre-training folder of manifests (train, validation) and a MELD folder (train, dev) to evaluate on."""
    friends = tmp_path / "friends"
    friends.mkdir()
    (friends / "train.jsonl").write_text(
        json.dumps({"dialogue_id": "e1", "utterances": utterances(EPISODE, "e1")}) + "\n"
        + json.dumps({"dialogue_id": "e2", "utterances": utterances(["No overlap here at all.", "Right."], "e2")}) + "\n")
    (friends / "validation.jsonl").write_text(
        json.dumps({"dialogue_id": "e3", "utterances": utterances(["We are going to the BEACH tomorrow!"], "e3")}) + "\n")
    meld = tmp_path / "meld"
    meld.mkdir()
    write_meld_csv(meld / "train_sent_emo.csv", [("Where is my coffee?", "A", "neutral", "neutral", 0, 0)])
    write_meld_csv(meld / "dev_sent_emo.csv", DEV_ROWS)
    return friends, meld


def test_normalisation_and_minimum_length():
    assert normalise_utterance("I can’t  believe it, JOEY!") == normalise_utterance("i cant believe it ... joey")
    assert shared_key("Oh my God!") is None  # 3 words: never counted as shared
    assert shared_key("We are going  to the beach.") == "we are going to the beach"


def test_find_overlap_counts_both_sides(corpora, tmp_path):
    friends, meld = corpora
    pretraining = load_pretraining_dataset(str(friends), cache_dir=str(tmp_path / "c"))  # a folder of manifests
    assert sorted(pretraining) == ["train", "validation"]
    evaluation = evaluation_part(load_pretraining_dataset(str(meld), cache_dir=str(tmp_path / "c")))
    assert list(evaluation) == ["validation"]  # MELD's train split is not evaluation data
    report = find_overlap(pretraining, evaluation)
    assert report.evaluation["validation"] == {"dialogues": 2, "dialogues_sharing": 1, "utterances": 2, "shared": 2}
    # "Where is my coffee?" is in MELD's train split only, "Oh my God!" is too short: neither counts
    assert report.pretraining["train"] == {"dialogues": 2, "dialogues_sharing": 1, "utterances": 5, "shared": 1}
    assert report.pretraining["validation"]["shared"] == 1
    assert report.examples == [("dia0_utt0", "e1_u1"), ("dia0_utt2", "e3_u0")]
    assert "| evaluation | validation | 2 | 1 | 2 | 2 |" in report.format()
    with pytest.raises(DataError, match=r"meld: no validation or test split to compare with \(splits: \['train'\]\)"):
        evaluation_part({"train": evaluation["validation"]}, "meld")


def test_exclude_overlap_cuts_the_shared_utterances_out(corpora, tmp_path):
    friends, meld = corpora
    dialogues = build_umd(str(friends), cache_dir=str(tmp_path / "c"))
    evaluation = evaluation_part(load_pretraining_dataset(str(meld), cache_dir=str(tmp_path / "c")))
    kept, removed = exclude_overlap(dialogues, evaluation)
    # e1 loses utterance 1: its first piece (1 utterance) is too short, the rest (5 utterances) is a dialogue of its own
    assert kept["train"]["dialogue_id"] == ["e1#1", "e2"]
    assert kept["train"]["utterance_id"][0] == ["e1_u2", "e1_u3", "e1_u4", "e1_u5", "e1_u6"]
    assert "validation" not in kept  # e3's only utterance was shared
    assert removed == {"shared utterances": 2, "dialogues cut": 2, "pieces of fewer than 2 utterances (left out)": 1,
                       "split validation left without dialogues (left out)": 1}
    assert find_overlap(kept, evaluation).evaluation["validation"]["shared"] == 0


def test_cli_overlap_and_exclude_overlap(corpora, tmp_path, capsys):
    from tcmp.data.__main__ import main

    friends, meld = corpora
    assert main(["overlap", str(friends), str(meld), "--cache-dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "| pre-training | train | 2 | 1 | 5 | 1 |" in out and "| evaluation | validation | 2 | 1 | 2 | 2 |" in out
    assert main(["build", "umd", str(friends), "--exclude-overlap", str(meld), "--output", str(tmp_path / "out"),
                 "--cache-dir", str(tmp_path / "c")]) == 0
    assert "excluded the overlap with" in capsys.readouterr().err
    saved = load_from_disk(str(tmp_path / "out"))
    assert list(saved) == ["train"] and saved["train"]["dialogue_id"] == ["e1#1", "e2"]
    with pytest.raises(SystemExit) as exited:
        main(["build", "pdd", str(meld), "--exclude-overlap", str(meld), "--output", str(tmp_path / "o")])
    assert exited.value.code == 2 and "--exclude-overlap applies to build umd only" in capsys.readouterr().err


def test_a_folder_of_manifests_needs_one_per_split(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    with pytest.raises(DataError, match=r"holds no JSON Lines manifest"):
        build_umd(str(folder))
    line = json.dumps({"dialogue_id": "d", "utterances": utterances(["a b c d", "e f g h"], "d")}) + "\n"
    (folder / "train.jsonl").write_text(line)
    (folder / "more_train.jsonl").write_text(line)
    with pytest.raises(DataError, match=r"more_train.jsonl' and .*train.jsonl' both name split 'train'"):
        build_umd(str(folder))
