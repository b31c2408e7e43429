"""P-IEM, UMD manifests, pre-training windows, the release importer, dispatchers and the CLI."""

import json
import os

import joblib
import pytest

from tcmp.data import (DataError, MissingFileError, PickleRefusedError, PretrainingWindows, ReconstructionRule,
                       build_piem, build_umd, import_release, load_prerecognition_dataset,
                       load_pretraining_dataset)
from tests.data.conftest import write_iemocap, write_manifest, write_meld_csv, write_wav

LOOSE = ReconstructionRule(2, 10, False, False)


def test_piem_labels_order_and_xxx(tmp_path):
    root = write_iemocap(tmp_path / "iem")
    data, report = build_piem(str(root), rule=LOOSE, train_sessions=(1,), test_sessions=(2,), dev_sessions=None,
                              dev_fraction=0.5, cache_dir=str(tmp_path / "c"), return_report=True)
    assert set(data) == {"train", "validation", "test"}
    test = data["test"]
    names = test.features["label"].names
    one = test.filter(lambda row: row["dialogue_id"] == "Ses02F_impro01")
    # utterances sorted by start time; targets from index 2: F001 is xxx (never a target); sur -> other
    assert one["sample_id"] == ["Ses02F_impro01_M001", "Ses02F_impro01_F002", "Ses02F_impro01_M002"]
    assert [names[i] for i in one["label"]] == ["other", "angry", "excited"]
    assert one[0]["text"] == ["Excuse me.", "Do you have your forms?", "Yeah."]
    assert one[0]["speaker"] == ["F", "M", "F"]
    assert all(p.endswith(".wav") for p in one[0]["audio_path"])
    for row in test:
        assert row["target_utterance_id"] not in row["utterance_id"]
        assert not any(p.endswith(row["target_utterance_id"] + ".wav") for p in row["audio_path"])
    assert len(data["train"]) == len(data["validation"]) == 3  # one dialogue each
    assert report.splits["test"].notes["utterance labelled xxx (no agreement; context only)"] == 2
    assert report.splits["test"].notes["transcription line whose id is not an utterance id (e.g. M_xxx), ignored"] == 2
    default = build_piem(str(root), train_sessions=(1,), test_sessions=(2,), dev_sessions=(2,),
                         cache_dir=str(tmp_path / "c"))
    # default rule (speaker change, target spoke in the context): F000 M000 F001(xxx) | M001 F002 M002
    assert default["train"]["sample_id"] == [f"Ses01F_impro0{k}_{u}" for k in (1, 2) for u in ("M001", "F002", "M002")]


def test_piem_bad_input(tmp_path):
    root = write_iemocap(tmp_path / "iem", sessions=(1,))
    with pytest.raises(MissingFileError, match="Session2"):
        build_piem(str(root), train_sessions=(1,), test_sessions=(2,), cache_dir=str(tmp_path / "c"))
    label = root / "IEMOCAP_full_release" / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    label.write_text(label.read_text().replace("\tang\t", "\tgrumpy\t"))
    with pytest.raises(DataError, match=r"Ses01F_impro01.txt, line \d+: unknown emotion code 'grumpy'"):
        build_piem(str(root), train_sessions=(1,), test_sessions=(), cache_dir=str(tmp_path / "c"))
    os.remove(label)
    with pytest.raises(MissingFileError, match="label file"):
        build_piem(str(root), train_sessions=(1,), test_sessions=(), cache_dir=str(tmp_path / "c"))


def manifest_dialogues(folder, lengths):
    write_wav(str(folder / "audio" / "ep1.wav"), seconds=2.5)  # the longest dialogue (23) cuts up to 2.3 s
    return [{"dialogue_id": f"d{k}", "utterances": [
        {"text": f"d{k} u{i}", "speaker": "AB"[i % 2], "audio": "audio/ep1.wav", "start": 0.1 * i,
         "end": 0.1 * i + 0.1} for i in range(n)]} for k, n in enumerate(lengths)]


def test_umd_and_windows(tmp_path):
    folder = tmp_path / "umd"
    path = write_manifest(folder, manifest_dialogues(folder, [23, 7, 11]))
    data = build_umd(str(path), cache_dir=str(tmp_path / "c"))["train"]
    assert data[0]["audio_path"][0] == str(folder / "audio" / "ep1.wav")
    assert data[0]["audio_start"][3] == pytest.approx(0.3)
    windows = PretrainingWindows(data, window=11, stride=5, seed=0)
    # 23 utterances: 1 + (23-11)//5 = 3 windows at 0, 5, 10; 7 -> one window (all); 11 -> one window
    assert [windows.index[i] for i in range(len(windows))] == [(0, 0), (0, 5), (0, 10), (1, 0), (2, 0)]
    item = windows[2]
    assert item["text"] == [f"d0 u{i}" for i in range(10, 21)]
    assert item["dialogue_index"] == 0 and item["dialogue_id"] == "d0" and len(item["audio_start"]) == 11
    assert windows[3]["text"] == [f"d1 u{i}" for i in range(7)]
    windows.set_epoch(1)
    assert windows.offset == 1 and len(windows) == 5
    assert [windows.index[i] for i in range(3)] == [(0, 1), (0, 6), (0, 11)]
    assert windows[2]["text"][-1] == "d0 u21"
    windows.set_epoch(4)
    assert [windows.index[i] for i in range(3)] == [(0, 4), (0, 9), (0, 12)]  # clamped to n - window
    assert windows[2]["text"][-1] == "d0 u22"
    windows.set_epoch(5)
    assert windows.offset == 0
    assert PretrainingWindows(data, seed=3).offset == 3


def test_a_folder_of_split_manifests_is_one_umd_source(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for split, count in (("train", 3), ("validation", 1)):
        (folder / f"{split}.jsonl").write_text("".join(
            json.dumps({"dialogue_id": f"{split}{k}", "utterances": [{"text": f"{split} {k} {i}"} for i in range(5)]}) + "\n"
            for k in range(count)))
    dialogues = load_pretraining_dataset(str(folder), cache_dir=str(tmp_path / "c"))
    assert {name: len(split) for name, split in dialogues.items()} == {"train": 3, "validation": 1}
    assert dialogues["validation"][0]["text"][4] == "validation 0 4"
    with pytest.raises(DataError, match="JSON Lines manifests"):
        load_pretraining_dataset(str(tmp_path / "c"))


def test_umd_bad_input(tmp_path):
    folder = tmp_path / "u"
    with pytest.raises(MissingFileError):
        build_umd(str(folder / "none.jsonl"), cache_dir=str(tmp_path / "c"))
    path = write_manifest(folder, [{"dialogue_id": "a", "utterances": [{"text": "x", "audio": "missing.wav"}]}])
    with pytest.raises(MissingFileError, match=r"line 1, utterance 0: audio file .*missing.wav"):
        build_umd(str(path), cache_dir=str(tmp_path / "c"))
    path.write_text('{"dialogue_id": "a", "utterances": [{"text": "x"}]}\nnot json\n')
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        build_umd(str(path), cache_dir=str(tmp_path / "c"))


def release_dialogues():
    return [[
        {"utterance": "hi", "speaker": "A", "wav_path": "w/0.wav", "emotion": "joy", "sentiment": "positive"},
        {"utterance": "hey", "speaker": "B", "wav_path": "w/1.wav", "emotion": "neutral", "sentiment": "neutral",
         "next emotion": "anger", "next sentiment": "negative"},
        {"utterance": "go away", "speaker": "A", "wav_path": "w/2.wav", "emotion": "anger", "sentiment": "negative"},
    ]]


def test_release_import(tmp_path):
    path = tmp_path / "pmeld_train.joblib"
    joblib.dump(release_dialogues(), path)
    with pytest.raises(PickleRefusedError, match="arbitrary code"):
        import_release(str(path))
    with pytest.raises(PickleRefusedError):
        load_prerecognition_dataset(str(path))
    data = import_release(str(path), allow_pickle=True, cache_dir=str(tmp_path / "c"))
    row = data["train"][0]
    assert row["text"] == ["hi", "hey"] and row["speaker"] == ["A", "B"]
    assert row["target_speaker"] == "A" and row["target_utterance_id"] == "dia0_utt2"
    assert "go away" not in row["text"] and not any(p.endswith("2.wav") for p in row["audio_path"])
    assert row["audio_path"][0] == str(tmp_path / "w" / "0.wav")
    assert data["train"].features["label"].names[row["label"]] == "negative"
    raw = build_from_raw(tmp_path)
    assert data["train"].features == raw["train"].features  # same schema as the raw builder
    iem = tmp_path / "piem_test.joblib"
    items = release_dialogues()
    items[0][1]["next emotion"] = "fru"
    del items[0][1]["next sentiment"]
    joblib.dump(items, iem)
    piem = import_release(str(iem), kind="piem", allow_pickle=True, cache_dir=str(tmp_path / "c"))
    assert set(piem) == {"test"}
    assert piem["test"].features["label"].names[piem["test"][0]["label"]] == "frustrated"
    umd = tmp_path / "umd_dev.pkl"
    joblib.dump([{"script": [{"utterance": "a", "wav_path": "/x/a.wav"}, {"utterance": "b", "wav_path": "b.wav"}],
                  "neg": []}], umd)
    dialogues = load_pretraining_dataset(str(umd), allow_pickle=True, cache_dir=str(tmp_path / "c"))
    assert dialogues["validation"][0]["text"] == ["a", "b"]
    assert dialogues["validation"][0]["audio_path"] == ["/x/a.wav", str(tmp_path / "b.wav")]


def build_from_raw(tmp_path):
    folder = tmp_path / "meld"
    folder.mkdir(exist_ok=True)
    write_meld_csv(folder / "train_sent_emo.csv")
    return load_prerecognition_dataset(str(folder), cache_dir=str(tmp_path / "c"), allow_pickle=False)


def test_dispatch_errors_and_saved(tmp_path):
    with pytest.raises(MissingFileError):
        load_prerecognition_dataset(str(tmp_path / "nothing"))
    (tmp_path / "junk.bin").write_bytes(b"hello")
    with pytest.raises(DataError, match="neither"):
        load_prerecognition_dataset(str(tmp_path / "junk.bin"))
    with pytest.raises(DataError, match="neither MELD"):
        load_prerecognition_dataset(str(tmp_path))
    data = build_from_raw(tmp_path)
    data.save_to_disk(str(tmp_path / "saved"))
    assert load_prerecognition_dataset(str(tmp_path / "saved"))["train"]["sample_id"] == data["train"]["sample_id"]
    with pytest.raises(DataError, match=r"num_pretrain_dialogue .*MELD CSV folder.*build_pmeld accepts: media_dir"):
        load_prerecognition_dataset(str(tmp_path / "meld"), num_pretrain_dialogue=3)
    with pytest.raises(DataError, match=r"label_type .*demo source"):
        load_pretraining_dataset("demo", label_type="emotion")
    with pytest.raises(DataError, match=r"rule .*saved dataset"):
        load_prerecognition_dataset(str(tmp_path / "saved"), rule={"min_context": 1})


def test_cli_build_and_stats(tmp_path, capsys):
    from tcmp.data.__main__ import main

    folder = tmp_path / "meld"
    folder.mkdir()
    write_meld_csv(folder / "train_sent_emo.csv")
    assert main(["build", "pmeld", str(folder), "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"),
                 "--no-require-speaker-change"]) == 0
    assert "P-MELD build summary" in capsys.readouterr().err
    assert main(["stats", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "| train | 3 |" in out and "train (paper) | 4687" in out


def test_cli_has_a_flag_per_rule_field():
    import argparse

    from tcmp.data.__main__ import add_rule_flags, rule_from

    parser = argparse.ArgumentParser()
    add_rule_flags(parser)
    given = ["--min-context", "3", "--max-context", "7", "--no-require-target-spoke-before", "--require-speaker-change"]
    assert rule_from(parser.parse_args(given), parser) == ReconstructionRule(3, 7, False, True)
    assert rule_from(parser.parse_args([]), parser) == ReconstructionRule()


@pytest.mark.parametrize(
    "argv,status,message",
    [
        (["build", "pmeld", "{tmp}/nope", "--output", "{tmp}/o"], 1, "MELD CSV folder '{tmp}/nope' does not exist"),
        (["stats", "{tmp}/nope"], 1, "dataset source '{tmp}/nope': no such file or folder"),
        (["build", "demo", "--output", "{tmp}/o", "--options", '{"nope": 1}'], 1,
         "dataset option(s) nope do not apply to a demo source"),
        (["build", "demo", "--output", "{tmp}/o", "--options", "{bad"], 2, "--options '{bad' is not JSON"),
        (["build", "demo", "--output", "{tmp}/o", "--options", "[1]"], 2, "--options must be a JSON object"),
        (["build", "demo", "--output", "{tmp}/o", "--min-context", "5", "--max-context", "2"], 2,
         "ReconstructionRule.max_context (2) must be >= min_context (5)"),
    ],
    ids=["missing-csv-folder", "missing-source", "unknown-option", "options-not-json", "options-not-object", "rule"],
)
def test_cli_bad_input_is_one_line_naming_it(argv, status, message, tmp_path, capsys):
    from tcmp.data.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main([part.replace("{tmp}", str(tmp_path)) for part in argv])
    assert exited.value.code == status
    err = capsys.readouterr().err
    assert f"python -m tcmp.data: error: {message.replace('{tmp}', str(tmp_path))}" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()
