"""Property-based tests: hostile MELD CSVs, UMD manifests and wav files give correct datasets or a DataError naming the
file, row/line and value."""

import csv
import io
import json
import math
import os
import re
import string
import tempfile

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scipy.signal import resample_poly

from tcmp.data import AudioLoadError, DataError, build_pmeld, build_umd, load_audio
from tests.data.conftest import MELD_HEADER, write_wav

BUILD_SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SENTIMENTS = ("negative", "neutral", "positive")
CSV_NAME = "train_sent_emo.csv"


def _decode_line(raw: bytes) -> tuple[str, str]:
    """How a CSV line is meant to be read: UTF-8, else cp1252, else latin-1 (and which one was used)."""
    for encoding in ("utf-8", "cp1252", "latin-1"):
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue


@st.composite
def utterance_texts(draw):
    """(bytes written to the CSV, speaker): UTF-8 text with emoji/newlines/NUL, cp1252 text, raw invalid bytes."""
    kind = draw(st.sampled_from(["utf8", "emoji", "empty", "long", "cp1252", "bytes"]))
    if kind == "utf8":
        text = draw(st.text(max_size=30))
    elif kind == "emoji":
        text = draw(st.text(alphabet="😀🔥🙃👍🏽 \n,\"'a", max_size=20))
    elif kind == "empty":
        text = ""
    elif kind == "long":
        text = "long " * 30000  # 150,000 characters: beyond the csv module's default field limit
    if kind in ("utf8", "emoji", "empty", "long"):
        return text.encode("utf-8"), draw(st.sampled_from(["A", "B", "C", " A ", "😀", ""]))
    if kind == "cp1252":
        alphabet = st.characters(codec="cp1252", exclude_characters="\r\n")
        raw = draw(st.text(alphabet=alphabet, min_size=1, max_size=20)).encode("cp1252")
    else:
        raw = draw(st.binary(min_size=1, max_size=20)).replace(b"\r", b"\x81").replace(b"\n", b"\x8d")
    return raw, draw(st.sampled_from(["A", "B", "C"]))  # ASCII speakers: the line's encoding is the text's


@st.composite
def meld_tables(draw):
    """MELD rows (dialogue, utterance, text bytes, speaker, label) with gaps, duplicates, shuffles and bad labels."""
    rows = []
    for dialogue in draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=4, unique=True)):
        number = draw(st.integers(0, 3))
        for _ in range(draw(st.integers(1, 12))):
            raw, speaker = draw(utterance_texts())
            label = draw(st.sampled_from(SENTIMENTS + ("Positive", " NEUTRAL ", "negative")))
            rows.append((dialogue, number, raw, speaker, label))
            number += draw(st.sampled_from([1, 1, 1, 1, 1, 2, 3]))  # sometimes a gap
    fault = draw(st.sampled_from(["none"] * 6 + ["duplicate id", "unknown label"]))
    if fault != "none":
        i = draw(st.integers(0, len(rows) - 1))
        if fault == "duplicate id":
            rows.append(rows[i][:2] + rows[draw(st.integers(0, len(rows) - 1))][2:])
        else:
            bad = draw(st.text(alphabet=string.ascii_letters + " ", max_size=8).filter(
                lambda label: label.strip().lower() not in SENTIMENTS))
            rows[i] = rows[i][:4] + (bad,)
    if draw(st.booleans()):
        rows = draw(st.permutations(rows))
    return rows


def write_meld_bytes(path: str, rows):
    """A MELD CSV whose Utterance fields are the given bytes (each row's line in the text's own encoding)."""
    with open(path, "wb") as handle:
        handle.write((",".join(MELD_HEADER) + "\r\n").encode())
        for i, (dialogue, number, raw, speaker, label) in enumerate(rows):
            encoding = "utf-8" if _decode_line(raw)[1] == "utf-8" else "latin-1"  # latin-1: the bytes as they are
            line = io.StringIO()
            values = {"Sr No.": i + 1, "Utterance": raw.decode(encoding), "Speaker": speaker, "Emotion": "neutral",
                      "Sentiment": label, "Dialogue_ID": dialogue, "Utterance_ID": number, "Season": 1,
                      "Episode": 1, "StartTime": "00:00:01,000", "EndTime": "00:00:02,000"}
            csv.writer(line).writerow([values[h] for h in MELD_HEADER])
            handle.write(line.getvalue().encode(encoding))


def _expected_text(raw: bytes) -> str:
    pieces = re.split(rb"(\r\n|\r|\n)", raw)
    return "".join(piece.decode() if piece in (b"\r\n", b"\r", b"\n") else _decode_line(piece)[0] for piece in pieces)


def _first_problem(rows):
    """The error the builder must raise first (label checked before duplicates, in file order), or None."""
    seen = set()
    for i, (dialogue, number, _, _, label) in enumerate(rows):
        if label.strip().lower() not in SENTIMENTS:
            return rf"row {i + 1} \(line \d+\): unknown Sentiment label {re.escape(repr(label))}"
        if (dialogue, number) in seen:
            return rf"row {i + 1} \(line \d+\): duplicate utterance id dia{dialogue}_utt{number}"
        seen.add((dialogue, number))
    return None


def _is_target(context, target_speaker) -> bool:
    """The default rule, restated: 2..10 context utterances, a speaker change, the target speaker among them."""
    return len(context) >= 2 and context[-1] != target_speaker and target_speaker in context


def check_pmeld(rows, folder: str):
    path = os.path.join(folder, "m", CSV_NAME)
    os.makedirs(os.path.dirname(path))
    write_meld_bytes(path, rows)
    problem = _first_problem(rows)
    if problem is not None:
        with pytest.raises(DataError, match=rf"{re.escape(path)}, {problem}"):
            build_pmeld(os.path.dirname(path), cache_dir=os.path.join(folder, "c"))
        return "refused"
    data, report = build_pmeld(os.path.dirname(path), cache_dir=os.path.join(folder, "c"), return_report=True)
    by_id = {f"dia{d}_utt{u}": (d, u, raw, speaker.strip(), label.strip().lower())
             for d, u, raw, speaker, label in rows}
    dialogues = {}
    for uid, (d, u, *_rest) in sorted(by_id.items(), key=lambda item: item[1][:2]):
        dialogues.setdefault(d, []).append(uid)
    expected_targets = []
    for uids in dialogues.values():
        for t, uid in enumerate(uids):
            context = [by_id[c][3] for c in uids[max(0, t - 10):t]]
            if _is_target(context, by_id[uid][3]):
                expected_targets.append(uid)
    train = data["train"]
    names = train.features["label"].names
    assert sorted(train["sample_id"]) == sorted(expected_targets)
    for sample in train:
        d, u, _, speaker, label = by_id[sample["target_utterance_id"]]
        uids = dialogues[d]
        t = uids.index(sample["target_utterance_id"])
        assert sample["utterance_id"] == uids[max(0, t - 10):t]  # the rows just before, in utterance-id order
        assert sample["target_utterance_id"] not in sample["utterance_id"]
        assert 2 <= len(sample["utterance_id"]) <= 10
        assert sample["text"] == [_expected_text(by_id[c][2]) for c in sample["utterance_id"]]
        assert sample["speaker"] == [by_id[c][3] for c in sample["utterance_id"]]
        assert sample["target_speaker"] == speaker and names[sample["label"]] == label
    split = report.splits["train"]
    assert len(train) + sum(split.skipped.values()) == len(rows)  # every row: a sample or a counted skip
    summary = report.summary()
    for reason, count in split.skipped.items():
        assert f"skipped {count}: {reason}  e.g. {path}: dialogue 'dia" in summary
    gaps = sum(1 for uids in dialogues.values() for a, b in zip(uids, uids[1:])
               if by_id[b][1] != by_id[a][1] + 1)
    assert split.notes.get("gap in utterance ids (bridge)", 0) == gaps
    encodings = [_decode_line(piece)[1] for *_x, raw, _s, _l in rows for piece in re.split(rb"\r\n|\r|\n", raw)]
    if any(encoding != "utf-8" for encoding in encodings):
        for encoding in ("cp1252", "latin-1"):
            assert split.notes.get(f"{CSV_NAME}: lines not UTF-8, decoded as {encoding}", 0) == encodings.count(encoding)
    return "built"


@BUILD_SETTINGS
@given(rows=meld_tables())
def test_pmeld_from_hostile_csvs(rows):
    with tempfile.TemporaryDirectory() as folder:
        event(check_pmeld(rows, folder))


def test_pmeld_with_one_dialogue_of_two_thousand_utterances():
    rows = [(7, i, f"turn {i} 😀".encode(), "AB"[i % 2] if i % 5 else "C", "positive") for i in range(2000)]
    with tempfile.TemporaryDirectory() as folder:
        assert check_pmeld(rows, folder) == "built"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"\n\n", "the file is empty"),
        ((",".join(MELD_HEADER) + "\n").encode(), "a header and no rows: the train split would be empty"),
        (bytes(range(256)) * 20, "required column 'Utterance' is missing .*is it a MELD CSV"),
        ((",".join(MELD_HEADER) + '\n1,"never closed,A,joy,positive,0,0,1,1,a,b\n2,x,B,joy,positive,0,1\n').encode(),
         r"row 1 \(line 3\): only 2 of 11 columns"),
        ((",".join(MELD_HEADER) + "\n1,short\n").encode(), r"row 1 \(line 2\): only 2 of 11 columns"),
    ],
)
def test_pmeld_unreadable_csvs_name_the_file_and_line(tmp_path, content, message):
    (tmp_path / "m").mkdir()
    path = tmp_path / "m" / CSV_NAME
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"{re.escape(str(path))}.*{message}"):
        build_pmeld(str(tmp_path / "m"), cache_dir=str(tmp_path / "c"))


def test_pmeld_csv_with_old_mac_line_endings(tmp_path):
    (tmp_path / "m").mkdir()
    rows = [f"{i},hi {i},{'AB'[i % 2]},joy,positive,3,{i},1,1,a,b" for i in range(4)]
    (tmp_path / "m" / CSV_NAME).write_bytes("\r".join([",".join(MELD_HEADER)] + rows).encode())
    data = build_pmeld(str(tmp_path / "m"), cache_dir=str(tmp_path / "c"))
    assert data["train"]["sample_id"] == ["dia3_utt2", "dia3_utt3"]
    assert data["train"][1]["text"] == ["hi 0", "hi 1", "hi 2"]


GOOD_WAV_SECONDS = 1.0


BENIGN = {"text": ["hello", "", "😀🔥", "x" * 5000], "speaker": ["A", None, 7, "😀"], "audio": [None, "good.wav"],
          "start": [None, 0.0, 0.25, "0.5"], "end": [None, 0.5, 0.9]}
FAULTS = [("text", None), ("text", 5), ("text", "\ud800 half"), ("speaker", "\udfff"), ("audio", "missing.wav"),
          ("audio", "junk.wav"), ("audio", "empty.wav"), ("audio", 5), ("audio", ""), ("audio", ["good.wav"]),
          ("start", -1.0), ("start", math.nan), ("start", math.inf), ("start", "abc"), ("start", True),
          ("start", 3.0), ("end", math.inf), ("end", "later"), ("end", 0.1), ("id", "dup")]
LINE_FAULTS = ["not json", "not utf8", "no utterances"]


@st.composite
def manifests(draw):
    """Manifest lines (dialogues, blank lines, empty dialogues) with odd but valid values and at most one fault."""
    lines = []
    for number in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 5)) == 0:
            lines.append("blank")
            continue
        utterances = []
        for _ in range(draw(st.integers(0, 4))):
            utterance = {name: draw(st.sampled_from(values)) for name, values in BENIGN.items()}
            utterances.append({k: v for k, v in utterance.items() if v is not None or k == "text"})
        lines.append({"dialogue_id": f"d{number}", "utterances": utterances})
    fault = draw(st.sampled_from([None] + FAULTS + LINE_FAULTS))
    places = [(n, i) for n, line in enumerate(lines) if isinstance(line, dict) for i in range(len(line["utterances"]))]
    if fault in LINE_FAULTS:
        lines[draw(st.integers(0, len(lines) - 1))] = fault
    elif fault is not None and places:
        n, i = draw(st.sampled_from(places))
        name, value = fault
        utterance = lines[n]["utterances"][i]
        if name == "id":
            first = draw(st.sampled_from(places))
            value = lines[first[0]]["utterances"][first[1]].get("id", f"d{first[0]}_utt{first[1]}")
            if (n, i) == first:
                return lines
        if name in ("start", "end") or value == "good.wav":
            utterance["audio"] = "good.wav"
        if fault == ("end", 0.1):
            utterance["start"] = 0.25
        utterance[name] = value
    return lines


def _manifest_problem(lines):
    """(line number, regex) of the first problem the reader must report, or None; in the reader's order."""
    seen_ids = set()
    for number, entry in enumerate(lines, start=1):
        if entry == "not json":
            return number, ": not valid JSON"
        if entry == "not utf8":
            return number, r": not UTF-8 \(byte 0xff"
        if entry == "no utterances":
            return number, ": expected an object with an 'utterances' list"
        if entry == "blank":
            continue
        for index, u in enumerate(entry["utterances"]):
            at = f", utterance {index}: "
            if not isinstance(u.get("text"), str):
                return number, at + "each utterance needs a 'text' string"
            for name in ("start", "end"):
                if name in u:
                    value = u[name]
                    if isinstance(value, bool) or not isinstance(value, (int, float)) and not _numeric(value):
                        return number, at + f"'{name}' must be a number of seconds"
                    if not math.isfinite(float(value)) or float(value) < 0:
                        return number, at + f"'{name}' must be a finite number of seconds >= 0"
            start, end = (float(u[k]) if k in u else None for k in ("start", "end"))
            if start is not None and end is not None and end <= start:
                return number, at + r"end \(.*\) must be after start"
            audio = u.get("audio")
            if audio is not None:
                if not isinstance(audio, str) or not audio:
                    return number, at + "'audio' must be a file path"
                if audio == "missing.wav":
                    return number, at + "audio file .*missing.wav' does not exist"
                if audio in ("junk.wav", "empty.wav"):
                    return number, at + f"audio file .*{audio}': (unreadable|empty)"
                if start is not None and start >= GOOD_WAV_SECONDS:
                    return number, at + r"start \(3.0 s\) is not before the end of"
            uid = u.get("id", f"d{number - 1}_utt{index}")
            if uid in seen_ids:
                return number, at + f"duplicate utterance id '{uid}'"
            seen_ids.add(uid)
            if "\ud800" in u["text"]:
                return number, at + "'text' is not valid Unicode"
            if isinstance(u.get("speaker"), str) and "\udfff" in u["speaker"]:
                return number, at + "'speaker' is not valid Unicode"
    return None


def _numeric(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _write_manifest(path, lines):
    with open(path, "wb") as handle:
        for entry in lines:
            handle.write({"blank": b"   \n", "not json": b"{oops\n", "not utf8": b'{"text": "caf\xff"}\n',
                          "no utterances": b'{"dialogue_id": "z"}\n'}.get(entry) if isinstance(entry, str)
                         else (json.dumps(entry) + "\n").encode())


@BUILD_SETTINGS
@given(lines=manifests())
def test_umd_from_hostile_manifests(lines):
    with tempfile.TemporaryDirectory() as folder:
        write_wav(os.path.join(folder, "good.wav"), seconds=GOOD_WAV_SECONDS)
        with open(os.path.join(folder, "junk.wav"), "wb") as handle:
            handle.write(b"RIFF not really" * 8)
        open(os.path.join(folder, "empty.wav"), "wb").close()
        path = os.path.join(folder, "umd.jsonl")
        _write_manifest(path, lines)
        problem = _manifest_problem(lines)
        event("built" if problem is None else f"refused: {re.sub(r'[^a-zA-Z ]', '', problem[1]).strip()[:40]}")
        if problem is not None:
            number, message = problem
            with pytest.raises(DataError, match=rf"{re.escape(path)}, line {number}{message}"):
                build_umd(path, cache_dir=os.path.join(folder, "c"))
            return
        data, report = build_umd(path, cache_dir=os.path.join(folder, "c"), return_report=True)
        dialogues = [(n, e) for n, e in enumerate(lines, start=1) if isinstance(e, dict) and e["utterances"]]
        empty = [n for n, e in enumerate(lines, start=1) if isinstance(e, dict) and not e["utterances"]]
        assert data["train"]["dialogue_id"] == [e["dialogue_id"] for _, e in dialogues]
        assert report.splits["train"].skipped.get("dialogue without utterances", 0) == len(empty)
        for row, (_, entry) in zip(data["train"], dialogues):
            utterances = entry["utterances"]
            assert row["text"] == [u["text"] for u in utterances]
            assert row["speaker"] == [None if u.get("speaker") is None else str(u["speaker"]) for u in utterances]
            assert row["audio_path"] == [os.path.join(folder, u["audio"]) if "audio" in u else None
                                         for u in utterances]
            assert row["audio_start"] == [float(u["start"]) if "start" in u else None for u in utterances]
            for u, path_, start, end in zip(utterances, row["audio_path"], row["audio_start"], row["audio_end"]):
                if path_ is not None:  # every accepted segment decodes
                    assert load_audio(path_, start=start, end=end).size > 0


SUBTYPES = {"PCM_U8": 0.02, "PCM_16": 1e-3, "PCM_24": 1e-5, "FLOAT": 1e-5, "DOUBLE": 1e-5}


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from([500, 1000, 8000, 11025, 22050, 44100, 48000, 96000]),
    channels=st.integers(1, 4),
    subtype=st.sampled_from(sorted(SUBTYPES)),
    frames=st.sampled_from([0, 1, 7, 400, 3000]),
    kind=st.sampled_from(["noise", "zeros", "nan", "inf"]),
    segment=st.sampled_from([(None, None), (0.0, 0.01), (0.001, None), (None, 0.002), (-0.5, None), (5.0, 6.0),
                             (math.nan, None), (None, math.inf), ("0.1", None)]),
    seed=st.integers(0, 1000),
)
def test_load_audio_of_odd_wav_files(rate, channels, subtype, frames, kind, segment, seed):
    samples = np.random.default_rng(seed).uniform(-0.8, 0.8, size=(frames, channels))
    if kind == "zeros":
        samples[:] = 0
    float_file = subtype in ("FLOAT", "DOUBLE")
    if kind in ("nan", "inf") and float_file and frames:
        samples[frames // 2, 0] = math.nan if kind == "nan" else math.inf
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "odd.wav")
        soundfile.write(path, samples, rate, subtype=subtype)
        start, end = segment
        written = soundfile.info(path)
        if rate < 1000:
            expected = "absurd sample rate"
        elif written.frames == 0:
            expected = r"empty \(0"
        elif any(v is not None and (not isinstance(v, float) or not math.isfinite(v)) for v in segment):
            expected = "must be a finite number of seconds"
        else:
            first = 0 if start is None else round(start * rate)
            last = frames if end is None else min(round(end * rate), frames)
            expected = "empty segment" if first < 0 or first >= frames or last <= first else None
        if expected is None:
            chunk = samples[first:last]
            expected = "NaN or infinite" if not np.isfinite(chunk).all() else None
        if expected is not None:
            with pytest.raises(AudioLoadError, match=f"{re.escape(path)}.*{expected}"):
                load_audio(path, start=start, end=end)
            return
        audio = load_audio(path, start=start, end=end)
        mono = chunk.mean(axis=1)
        divisor = math.gcd(rate, 16000)
        reference = mono if rate == 16000 else resample_poly(mono, 16000 // divisor, rate // divisor)
        assert audio.dtype == np.float32 and audio.shape == reference.shape
        assert np.isfinite(audio).all()
        np.testing.assert_allclose(audio, reference, atol=SUBTYPES[subtype] * 4)
