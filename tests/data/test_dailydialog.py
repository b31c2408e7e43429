"""P-DD: DailyDialog's release layout → pre-recognition samples (rule, errors, leakage duplicates, detection, CLI)."""

import pytest

from tcmp.data import DataError, MissingFileError, ReconstructionRule, build_pdd, load_pretraining_dataset, load_prerecognition_dataset
from tcmp.data.dailydialog import DUPLICATE_REASON, MISMATCH_REASON, SPEAKER_NOTE
from tcmp.data.loading import detect_source

TRAIN = [
    ("Hi , Tom . __eou__ Hello . __eou__ How are you ? __eou__ Fine , thanks ! __eou__", "0 0 0 4 ", "2 1 2 1 "),
    ("Is it raining ? __eou__ Yes . __eou__ Oh no . __eou__", "0 0 5 ", "2 1 1 "),
    ("Hi , Tom . __eou__ Hello . __eou__ How are you ? __eou__ Fine , thanks ! __eou__", "0 0 0 4 ", "2 1 2 1 "),
]
VALIDATION = [
    ("IS IT  raining?__eou__ yes . __eou__ Oh   no . __eou__", "0 0 1 ", "2 1 1 "),  # = train line 2 (case, spaces)
    ("Look ! __eou__ What ? __eou__ A bird . __eou__ Wow ! __eou__", "0 0 0 6 ", "3 2 1 1 "),
]


def write_release(folder, splits=None):
    """A tiny DailyDialog release: `<split>/dialogues_<split>.txt` and its emotion and act files."""
    splits = {"train": TRAIN, "validation": VALIDATION} if splits is None else splits
    for split, lines in splits.items():
        (folder / split).mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(("dialogues_{}.txt", "dialogues_emotion_{}.txt", "dialogues_act_{}.txt")):
            (folder / split / name.format(split)).write_text("".join(line[index] + "\n" for line in lines))
    return folder


@pytest.fixture
def release(tmp_path):
    return write_release(tmp_path / "dailydialog")


def test_pdd_rule_speakers_and_labels(release, tmp_path):
    data, report = build_pdd(str(release), cache_dir=str(tmp_path / "c"), return_report=True)
    train = data["train"]
    # 4 utterances → targets u2 and u3 (2 context utterances, A/B alternate so the speaker changes and has spoken)
    assert train["sample_id"] == ["train_1_u2", "train_1_u3", "train_2_u2", "train_3_u2", "train_3_u3"]
    names = train.features["label"].names
    assert names[0] == "no emotion" and len(names) == 7
    assert [names[label] for label in train["label"]] == ["no emotion", "happiness", "sadness", "no emotion", "happiness"]
    first = train[1]
    assert first["text"] == ["Hi , Tom .", "Hello .", "How are you ?"] and first["speaker"] == ["A", "B", "A"]
    assert first["target_speaker"] == "B" and first["dialogue_id"] == "train_1"
    assert first["audio_path"] == [None, None, None]
    assert report.skipped["rule: fewer than 2 context utterances"] == 8  # u0, u1 of the 4 dialogues not left out
    assert report.splits["train"].notes[SPEAKER_NOTE] == 1 and report.info["speakers"] == SPEAKER_NOTE
    assert report.rule == ReconstructionRule()  # the default rule, unchanged


def test_pdd_dialogue_acts(release, tmp_path):
    data = build_pdd(str(release), label_type="act", cache_dir=str(tmp_path / "c"))
    names = data["train"].features["label"].names
    assert names == ["inform", "question", "directive", "commissive"]
    assert [names[label] for label in data["train"]["label"][:2]] == ["question", "inform"]  # codes 2, 1: 1-based


def test_pdd_leakage_duplicates(release, tmp_path, capsys):
    data, report = build_pdd(str(release), cache_dir=str(tmp_path / "c"), return_report=True)
    # validation line 1 repeats train line 2 once case and spaces are ignored: left out, counted, named
    assert data["validation"]["dialogue_id"] == ["validation_2", "validation_2"]
    validation = report.splits["validation"]
    assert validation.skipped[DUPLICATE_REASON] == 1
    assert "dialogues_validation.txt, line 1 (= train line 2)" in validation.examples[DUPLICATE_REASON][0]
    assert "skipped 1: evaluation dialogue identical to a training dialogue" in capsys.readouterr().err
    # the repeat inside train (line 3 = line 1) is kept
    assert DUPLICATE_REASON not in report.splits["train"].skipped and len(data["train"]) == 5

    kept, report = build_pdd(str(release), keep_duplicates=True, cache_dir=str(tmp_path / "c"), return_report=True)
    assert kept["validation"]["dialogue_id"] == ["validation_1", "validation_2", "validation_2"]
    assert not report.splits["validation"].skipped[DUPLICATE_REASON]
    assert report.info["keep_duplicates"] is True


def test_pdd_evaluation_split_alone_keeps_everything(tmp_path):
    folder = write_release(tmp_path / "dd", {"validation": VALIDATION})
    data = build_pdd(str(folder), cache_dir=str(tmp_path / "c"))
    assert list(data) == ["validation"] and len(data["validation"]) == 3


def test_pdd_count_mismatch_is_a_named_skip(tmp_path):
    lines = [TRAIN[0], ("One . __eou__ Two . __eou__ Three . __eou__ Four . __eou__", "0 0 0 ", "1 1 1 ")]
    folder = write_release(tmp_path / "dd", {"train": lines})
    data, report = build_pdd(str(folder), cache_dir=str(tmp_path / "c"), return_report=True)
    assert data["train"]["dialogue_id"] == ["train_1", "train_1"]
    assert report.skipped[MISMATCH_REASON] == 1
    assert report.splits["train"].examples[MISMATCH_REASON][0].endswith(
        "dialogues_train.txt, line 2: 4 utterances, 3 emotion codes")


@pytest.mark.parametrize(
    "line,message",
    [
        (("A . __eou__ B . __eou__ C .", "0 0 0 ", "1 1 1 "),
         r"dialogues_train.txt, line 2: does not end with '__eou__' \(a dialogue line must\): 'A . __eou__ B . __eou__ C .'"),
        (("A . __eou__ B . __eou__", "0 7 ", "1 1 "), r"dialogues_emotion_train.txt, line 2: emotion code '7' is not an integer in 0..6"),
        (("A . __eou__ B . __eou__", "0 x ", "1 1 "), r"dialogues_emotion_train.txt, line 2: emotion code 'x' is not an integer in 0..6"),
        (("A . __eou__ B . __eou__", "0 -1 ", "1 1 "), r"line 2: emotion code '-1' is not an integer"),
    ],
    ids=["no-eou", "code-out-of-range", "code-not-integer", "negative-code"],
)
def test_pdd_bad_lines_name_file_line_and_value(tmp_path, line, message):
    folder = write_release(tmp_path / "dd", {"train": [TRAIN[0], line]})
    with pytest.raises(DataError, match=message):
        build_pdd(str(folder), cache_dir=str(tmp_path / "c"))


def test_pdd_bad_files(release, tmp_path):
    with pytest.raises(DataError, match=r"dialogues_act_train.txt, line 1: act code '0' is not an integer in 1..4"):
        (release / "train" / "dialogues_act_train.txt").write_text("0 1 1 1\n" * 3)
        build_pdd(str(release), label_type="act", cache_dir=str(tmp_path / "c"))
    (release / "train" / "dialogues_emotion_train.txt").write_text("0 0 0 4\n0 0 5\n")
    with pytest.raises(DataError, match=r"dialogues_train.txt has 3 dialogue lines but .*dialogues_emotion_train.txt has 2"):
        build_pdd(str(release), cache_dir=str(tmp_path / "c"))
    (release / "train" / "dialogues_emotion_train.txt").unlink()
    with pytest.raises(MissingFileError, match=r"dialogues_train.txt: the emotion file .*dialogues_emotion_train.txt' beside it is missing"):
        build_pdd(str(release), cache_dir=str(tmp_path / "c"))
    (release / "validation" / "dialogues_validation.txt").write_bytes(b"Caf\xe9 . __eou__\n")
    with pytest.raises(DataError, match=r"dialogues_validation.txt, line 1: not UTF-8 \(byte 0xe9 at column 4\)"):
        build_pdd(str(release / "validation"), cache_dir=str(tmp_path / "c"))  # the files directly in the folder
    with pytest.raises(DataError, match=r"label_type must be 'emotion' or 'act' for DailyDialog, got 'sentiment'"):
        build_pdd(str(release), label_type="sentiment")
    with pytest.raises(MissingFileError, match=r"holds no DailyDialog split"):
        build_pdd(str(tmp_path))


def test_pdd_detection_and_loading(release, tmp_path):
    assert detect_source(str(release)) == "pdd"
    samples = load_prerecognition_dataset(str(release), cache_dir=str(tmp_path / "c"))
    assert len(samples["train"]) == 5 and len(samples["validation"]) == 2
    dialogues = load_pretraining_dataset(str(release), cache_dir=str(tmp_path / "c"))
    assert dialogues["train"]["speaker"][1] == ["A", "B", "A"] and len(dialogues["validation"]) == 2
    assert dialogues["train"]["utterance_id"][0] == ["train_1_u0", "train_1_u1", "train_1_u2", "train_1_u3"]


def test_pdd_cli_build_and_stats(release, tmp_path, capsys):
    from tcmp.data.__main__ import main

    out = tmp_path / "out"
    assert main(["build", "pdd", str(release), "--output", str(out), "--cache-dir", str(tmp_path / "c")]) == 0
    captured = capsys.readouterr()
    assert "P-DD build summary" in captured.err and "skipped 1: evaluation dialogue identical" in captured.err
    assert "| train | 5 | 2.4 |" in captured.out and "| validation | 2 |" in captured.out
    assert main(["stats", str(out)]) == 0
    assert "| validation | 2 | 2.5 | 2.2 | 1 | 0 | 0 | 0 | 0 | 0 | 1 |" in capsys.readouterr().out
    assert main(["build", "pdd", str(release), "--keep-duplicates", "--label-type", "act", "--output",
                 str(tmp_path / "kept"), "--cache-dir", str(tmp_path / "c")]) == 0
    assert "| validation | 3 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["build", "pmeld", str(release), "--keep-duplicates", "--output", str(tmp_path / "o")])
    assert exited.value.code == 2
    assert "--keep-duplicates applies to build pdd only, not to build pmeld" in capsys.readouterr().err
