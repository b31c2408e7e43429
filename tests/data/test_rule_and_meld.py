"""Reconstruction rule and P-MELD (hand-checked counts and contexts), bad MELD input, caching."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tcmp.data import (AudioLoadError, DataError, MissingFileError, ReconstructionRule, build_pmeld,
                       dataset_stats, extract_audio, format_stats, load_audio, load_pretraining_dataset,
                       make_samples)
from tcmp.audio_utils import ffmpeg_executable
from tests.data.conftest import MELD_HEADER, MELD_ROWS, write_meld_csv, write_wav


def utterances(speakers, labels=None):
    labels = labels or ["neutral"] * len(speakers)
    return [{"utterance_id": f"u{i}", "text": f"text {i}", "speaker": s, "audio_path": None, "audio_start": None,
             "audio_end": None, "label": labels[i]} for i, s in enumerate(speakers)]


def targets(samples):
    return [s["target_utterance_id"] for s in samples]


def test_rule_hand_checked():
    dialogue = utterances(["A", "B", "A", "A", "B", "C", "A"])
    loose = ReconstructionRule(min_context=2, max_context=10, require_target_spoke_before=False,
                               require_speaker_change=False)
    samples, _ = make_samples(dialogue, loose, "d")
    assert targets(samples) == ["u2", "u3", "u4", "u5", "u6"]
    assert samples[0]["text"] == ["text 0", "text 1"]
    change = ReconstructionRule(2, 10, False, True)
    assert targets(make_samples(dialogue, change, "d")[0]) == ["u2", "u4", "u5", "u6"]  # u3: A after A
    spoke = ReconstructionRule(2, 10, True, False)
    assert targets(make_samples(dialogue, spoke, "d")[0]) == ["u2", "u3", "u4", "u6"]  # u5: C never spoke
    both = ReconstructionRule()  # defaults: 2..10, spoke before, speaker change
    assert targets(make_samples(dialogue, both, "d")[0]) == ["u2", "u4", "u6"]
    # max_context=2: u4's window is u2,u3 (A, A): B has not spoken in it; u6's window is u4,u5 (B, C)
    short = ReconstructionRule(2, 2, True, True)
    samples, skips = make_samples(dialogue, short, "d")
    assert targets(samples) == ["u2"]
    assert samples[0]["utterance_id"] == ["u0", "u1"]
    assert sorted(reason for reason, _ in skips).count("rule: target speaker has not spoken in the context") == 3


def test_rule_max_context_window():
    dialogue = utterances(["A", "B"] * 8)
    samples, _ = make_samples(dialogue, ReconstructionRule(2, 3, True, True), "d")
    assert targets(samples) == [f"u{i}" for i in range(2, 16)]
    assert samples[-1]["utterance_id"] == ["u12", "u13", "u14"]
    for sample in samples:
        assert sample["target_utterance_id"] not in sample["utterance_id"]
        assert len(sample["text"]) <= 3


def test_unlabelled_never_target_and_missing_audio_skip():
    dialogue = utterances(["A", "B", "A", "B"], labels=["neutral", "neutral", None, "sad"])
    dialogue[1]["audio_path"] = None
    for u in (dialogue[0], dialogue[2]):
        u["audio_path"] = "x.wav"
    samples, skips = make_samples(dialogue, ReconstructionRule(), "d", require_audio=True)
    assert samples == []
    # u2 (label None) is never a target; u3's context u1 has no audio
    assert skips[-1] == ("context utterance has no usable audio clip", "dialogue 'd', target 'u3' (missing: u1)")
    assert [where for _, where in skips if "u2" in where.split("target")[1]] == []


def test_pmeld_text_only_hand_checked(meld_dir, tmp_path):
    data, report = build_pmeld(str(meld_dir), cache_dir=str(tmp_path / "cache"), return_report=True)
    assert set(data) == {"train", "validation"}
    train = data["train"]
    # dia0: A B A B A -> targets utt2 (ctx A,B), utt3, utt4; dia1: A A B -> utt2: B never spoke -> none
    assert train["sample_id"] == ["dia0_utt2", "dia0_utt3", "dia0_utt4"]
    assert train[0]["text"] == ["hi there", "hello you"]
    assert train[0]["utterance_id"] == ["dia0_utt0", "dia0_utt1"]
    assert train[2]["speaker"] == ["A", "B", "A", "B"]
    assert train[0]["audio_path"] == [None, None]
    names = train.features["label"].names
    assert [names[i] for i in train["label"]] == ["negative", "negative", "neutral"]
    for row in train:
        assert row["target_utterance_id"] not in row["utterance_id"]
        assert MELD_ROWS[int(row["target_utterance_id"][-1])][0] not in row["text"]
    assert report.splits["train"].skipped["rule: target speaker has not spoken in the context"] == 1
    emotion = build_pmeld(str(meld_dir), label_type="emotion", cache_dir=str(tmp_path / "cache"))
    enames = emotion["train"].features["label"].names
    assert [enames[i] for i in emotion["train"]["label"]] == ["sadness", "surprise", "neutral"]
    stats = dataset_stats(data)
    assert stats["train"]["NU"] == 3 and stats["train"]["ADL"] == pytest.approx(3.0)
    assert stats["train"]["classes"] == {"negative": 2, "neutral": 1, "positive": 0}
    assert "train (paper)" in format_stats(stats, paper="pmeld")
    with pytest.raises(DataError, match="label_type must be 'sentiment' or 'emotion', got 'bogus'"):
        build_pmeld(str(meld_dir), label_type="bogus", cache_dir=str(tmp_path / "cache"))


def test_pmeld_with_media_and_missing_clip(meld_dir, meld_media, tmp_path):
    os.remove(meld_media / "dia0_utt1.wav")
    data, report = build_pmeld(str(meld_dir), media_dir=str(meld_media), cache_dir=str(tmp_path / "c"),
                               return_report=True)
    # every dia0 target has utt1 in its context -> all skipped, counted
    assert len(data["train"]) == 0
    assert report.splits["train"].skipped["context utterance has no usable audio clip"] == 3
    assert report.splits["train"].notes["utterance without a clip in the media folder"] == 1
    write_wav(str(meld_media / "dia0_utt1.wav"))
    data = build_pmeld(str(meld_dir), media_dir=str(meld_media), cache_dir=str(tmp_path / "c"))
    assert len(data["train"]) == 3  # media changed -> rebuilt
    row = data["train"][2]
    assert all(p.endswith(f"dia0_utt{i}.wav") for i, p in enumerate(row["audio_path"]))
    assert not any(p.endswith("dia0_utt4.wav") for p in row["audio_path"])  # the target's own clip never
    assert load_audio(row["audio_path"][0]).shape == (3200,)


def test_pmeld_unreadable_and_empty_clip_skipped(meld_dir, meld_media, tmp_path):
    (meld_media / "dia0_utt0.wav").write_bytes(b"")
    (meld_media / "dia0_utt1.wav").write_bytes(b"not a wav at all" * 10)
    data, report = build_pmeld(str(meld_dir), media_dir=str(meld_media), cache_dir=str(tmp_path / "c"),
                               return_report=True)
    assert len(data["train"]) == 0
    assert report.splits["train"].notes["unusable audio clip (missing/unreadable/empty/absurd rate)"] == 2
    assert report.splits["train"].skipped["context utterance has no usable audio clip"] == 3


def test_caching_reuses_and_invalidates(meld_dir, tmp_path):
    cache = str(tmp_path / "cache")
    first, r1 = build_pmeld(str(meld_dir), cache_dir=cache, return_report=True)
    second, r2 = build_pmeld(str(meld_dir), cache_dir=cache, return_report=True)
    assert first["train"].cache_files == second["train"].cache_files
    assert not r1.splits["train"].cached and r2.splits["train"].cached
    assert r2.splits["train"].skipped == r1.splits["train"].skipped  # the report survives the cache
    other = build_pmeld(str(meld_dir), cache_dir=cache, rule=ReconstructionRule(require_speaker_change=False))
    assert other["train"].cache_files != first["train"].cache_files
    rows = list(MELD_ROWS) + [("five six", "B", "joy", "positive", 0, 5)]
    write_meld_csv(meld_dir / "train_sent_emo.csv", rows)
    changed, r3 = build_pmeld(str(meld_dir), cache_dir=cache, return_report=True)
    assert not r3.splits["train"].cached
    assert len(changed["train"]) == 4


@pytest.mark.parametrize("problem", ["missing_folder", "no_csv", "column", "label", "duplicate", "non_int"])
def test_pmeld_bad_input(problem, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    path = folder / "train_sent_emo.csv"
    if problem == "missing_folder":
        with pytest.raises(MissingFileError, match="does not exist"):
            build_pmeld(str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "c"))
        return
    if problem == "no_csv":
        with pytest.raises(MissingFileError, match="train_sent_emo.csv"):
            build_pmeld(str(folder), cache_dir=str(tmp_path / "c"))
        return
    if problem == "column":
        write_meld_csv(path, header=[h for h in MELD_HEADER if h != "Speaker"])
        match = "required column 'Speaker'.*|.*train_sent_emo.csv.*"
    elif problem == "label":
        write_meld_csv(path, MELD_ROWS[:2] + [("x", "A", "joy", "happyish", 0, 2)])
        match = r"row 3.*'happyish'"
    elif problem == "duplicate":
        write_meld_csv(path, MELD_ROWS[:2] + [("x", "A", "joy", "positive", 0, 1)])
        match = "duplicate utterance id dia0_utt1"
    else:
        write_meld_csv(path, MELD_ROWS[:2] + [("x", "A", "joy", "positive", "zero", 1)])
        match = "must be integers"
    with pytest.raises(DataError, match=match) as error:
        build_pmeld(str(folder), cache_dir=str(tmp_path / "c"))
    assert "train_sent_emo.csv" in str(error.value)


def test_pmeld_gap_policies(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    rows = [r for r in MELD_ROWS if not (r[4] == 0 and r[5] == 2)]  # dia0: utt0, utt1, utt3, utt4
    write_meld_csv(folder / "train_sent_emo.csv", rows)
    bridged, report = build_pmeld(str(folder), cache_dir=str(tmp_path / "c"), return_report=True)
    assert report.splits["train"].notes["gap in utterance ids (bridge)"] == 1
    # A B [gap] B A: utt3 has no speaker change; utt4 (context A, B, B) is kept across the gap
    assert bridged["train"]["sample_id"] == ["dia0_utt4"]
    broken, report = build_pmeld(str(folder), cache_dir=str(tmp_path / "c"), on_gap="break", return_report=True)
    assert broken["train"]["sample_id"] == []
    assert report.splits["train"].skipped["context spans a gap in utterance ids"] == 2
    with pytest.raises(DataError, match="gap in utterance ids"):
        build_pmeld(str(folder), cache_dir=str(tmp_path / "c"), on_gap="error")


def test_pmeld_cp1252_bytes(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    rows = [("caf\u00e9 \u2019ok\u2019", "A", "joy", "positive", 0, 0)] + list(MELD_ROWS[1:5])
    write_meld_csv(folder / "train_sent_emo.csv", rows, encoding="cp1252")
    data, report = build_pmeld(str(folder), cache_dir=str(tmp_path / "c"), return_report=True)
    assert data["train"][0]["text"][0] == "caf\u00e9 \u2019ok\u2019"
    assert report.splits["train"].notes["train_sent_emo.csv: lines not UTF-8, decoded as cp1252"] == 1


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_pmeld_utf16_csv_reads_like_utf8(tmp_path, encoding):
    rows = [("caf\u00e9 \U0001F600", "A", "joy", "positive", 0, 0)] + list(MELD_ROWS[1:5])
    built = {}
    for name in ("utf-8", encoding):
        folder = tmp_path / name
        folder.mkdir()
        path = write_meld_csv(folder / "train_sent_emo.csv", rows, encoding="utf-8")
        if name != "utf-8":
            text = path.read_text(encoding="utf-8")
            path.write_bytes((b"\xfe\xff" if encoding.endswith("be") else b"") + text.encode(encoding))
        built[name] = build_pmeld(str(folder), cache_dir=str(tmp_path / f"c-{name}"))["train"].to_list()
    assert built[encoding] == built["utf-8"] and built["utf-8"][0]["text"][0] == "caf\u00e9 \U0001F600"


def test_load_audio(tmp_path):
    path = write_wav(str(tmp_path / "a.wav"), seconds=1.0, rate=8000)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.shape == (16000,)
    assert load_audio(path, start=0.25, end=0.5).shape == (4000,)
    import soundfile
    stereo = tmp_path / "s.wav"
    soundfile.write(str(stereo), np.ones((4410, 2), dtype=np.float32) * 0.5, 44100)
    assert load_audio(str(stereo)).shape == (1600,)
    with pytest.raises(AudioLoadError, match="missing"):
        load_audio(str(tmp_path / "nope.wav"))
    (tmp_path / "e.wav").write_bytes(b"")
    with pytest.raises(AudioLoadError, match="empty"):
        load_audio(str(tmp_path / "e.wav"))
    (tmp_path / "j.wav").write_bytes(b"RIFF garbage" * 20)
    with pytest.raises(AudioLoadError, match="unreadable"):
        load_audio(str(tmp_path / "j.wav"))
    slow = write_wav(str(tmp_path / "slow.wav"), seconds=1.0, rate=500)
    with pytest.raises(AudioLoadError, match="absurd sample rate"):
        load_audio(slow)
    nan = tmp_path / "nan.wav"
    soundfile.write(str(nan), np.full(100, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match="NaN"):
        load_audio(str(nan))
    silent = write_wav(str(tmp_path / "zero.wav"), seconds=0.0)
    with pytest.raises(AudioLoadError, match="empty"):
        load_audio(silent)


@pytest.mark.parametrize("rate", [16000, 44100, 8000])
def test_load_audio_reads_only_what_the_processor_keeps(tmp_path, monkeypatch, rate):
    import soundfile
    path = str(tmp_path / "long.wav")
    soundfile.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, (30 * rate, 2)).astype(np.float32), rate)
    whole = load_audio(path, start=2.0)
    reads = []
    read = soundfile.read
    monkeypatch.setattr(soundfile, "read", lambda *a, **k: reads.append(k["stop"] - k["start"]) or read(*a, **k))
    kept = load_audio(path, start=2.0, max_samples=16000)
    np.testing.assert_array_equal(kept, whole[:16000])
    assert reads[0] < 1.1 * rate + 100


def to_mp4(wav, mp4):
    """An AAC .mp4 of `wav`, made with the ffmpeg that tcmp finds (PATH, else the imageio-ffmpeg wheel's)."""
    subprocess.run([ffmpeg_executable(str(wav)), "-nostdin", "-y", "-loglevel", "error", "-i", str(wav), "-c:a", "aac",
                    str(mp4)], check=True)
    return mp4


def test_extract_audio(tmp_path, monkeypatch):
    mp4 = to_mp4(write_wav(str(tmp_path / "a.wav"), seconds=0.5, rate=44100), tmp_path / "a.mp4")
    out = extract_audio(str(mp4), str(tmp_path / "out" / "a.wav"))
    audio = load_audio(out)
    assert abs(audio.shape[0] - 8000) < 1200 and np.abs(audio).max() > 0.05  # aac adds a little padding
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.wav"]  # no partial file left behind
    (tmp_path / "bad.mp4").write_bytes(b"not a video" * 50)
    with pytest.raises(AudioLoadError, match="bad.mp4.*ffmpeg failed"):
        extract_audio(str(tmp_path / "bad.mp4"), str(tmp_path / "out" / "bad.wav"))
    assert not (tmp_path / "out" / "bad.wav").exists()
    with pytest.raises(AudioLoadError, match="missing"):
        extract_audio(str(tmp_path / "none.mp4"), str(tmp_path / "out" / "none.wav"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no ffmpeg on PATH: the imageio-ffmpeg wheel's binary
    assert load_audio(extract_audio(str(mp4), str(tmp_path / "out" / "b.wav"))).shape == audio.shape
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # nor the wheel
    with pytest.raises(AudioLoadError, match=r"a.mp4.*no `ffmpeg` program \(install .*`pip install imageio-ffmpeg`"):
        extract_audio(str(mp4), str(tmp_path / "out" / "c.wav"))


def test_pmeld_mp4_clips_extracted_into_cache(meld_dir, meld_media, tmp_path):
    to_mp4(meld_media / "dia0_utt0.wav", meld_media / "dia0_utt0.mp4")
    os.remove(meld_media / "dia0_utt0.wav")
    data = build_pmeld(str(meld_dir), media_dir=str(meld_media), cache_dir=str(tmp_path / "c"))
    first = data["train"][0]["audio_path"][0]
    assert first.endswith("dia0_utt0.wav") and str(tmp_path / "c") in first and load_audio(first).shape[0] > 3000


def test_meld_dialogues_for_pretraining_keep_every_utterance_without_labels(meld_dir, tmp_path):
    dialogues = load_pretraining_dataset(str(meld_dir), cache_dir=str(tmp_path / "cache"))
    assert set(dialogues) == {"train", "validation"}
    train = dialogues["train"]
    assert "label" not in train.column_names
    assert train["dialogue_id"] == ["dia0", "dia1"]
    assert train[0]["text"] == [row[0] for row in MELD_ROWS[:5]]
    assert train[1]["speaker"] == ["A", "A", "B"]
    assert train[1]["utterance_id"] == ["dia1_utt0", "dia1_utt1", "dia1_utt2"]
    assert dialogues["validation"].num_rows == 1


def test_the_schema_turns_utterances_into_row_columns_and_back():
    from tcmp.data.schema import UTTERANCE_COLUMNS, prerecognition_features, row_utterances, utterance_columns

    utterances = [{"utterance_id": "u0", "text": "hi", "speaker": "A", "label": "neutral"}, {"text": "yo", "speaker": "B"}]
    columns = utterance_columns(utterances)
    assert list(columns) == list(UTTERANCE_COLUMNS) and set(UTTERANCE_COLUMNS) <= set(prerecognition_features(["x"]))
    assert columns["utterance_id"] == ["u0", None] and columns["audio_path"] == [None, None]
    back = row_utterances({"dialogue_id": "d", "text": columns["text"], "speaker": columns["speaker"]})
    assert back == [{**dict.fromkeys(UTTERANCE_COLUMNS), "text": "hi", "speaker": "A"},
                    {**dict.fromkeys(UTTERANCE_COLUMNS), "text": "yo", "speaker": "B"}]
