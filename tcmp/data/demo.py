"""
The embedded demo corpus: small synthetic multimodal dialogues, seeded and deterministic.

Characters have a voice (base pitch, loudness) and a temperament. Each has a mood (negative/neutral/positive) that
persists from turn to turn and reacts to what was just said: an *empathetic* character tends to take on the mood of
the previous utterance, a *contrarian* one the opposite; now and then the mood changes at random. Each utterance
expresses its speaker's mood in words (mood words, sometimes none: text alone is then ambiguous) and in prosody
(pitch level and contour, energy, tempo, spectral tilt of a synthesised harmonic "voice" with syllables and pauses).
The next speaker's mood therefore follows from the context (their own last mood, the last utterance's mood, who they
are), while the classes are balanced (a model that sees nothing gets about a third right).

Audio clips are 16 kHz mono 16-bit wavs of 1–5 s, drawn from a pool synthesised once per (seed, clip_variants):
one clip per (character, mood, duration bin from the utterance's word count, variant). Utterances share clips, so
the corpus stays small on disk and fast to build at any `scale`.
"""

import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from .common import SplitReport, cached_split, finish
from .rule import ReconstructionRule, make_samples
from .schema import dialogue_features, prerecognition_features, utterance_columns

LABELS = ("negative", "neutral", "positive")
SAMPLING_RATE = 16000
CHARACTERS = [  # name, base F0 (Hz), loudness, temperament
    ("Avery", 210.0, 1.00, "empathetic"), ("Blake", 115.0, 0.90, "empathetic"), ("Casey", 185.0, 1.10, "contrarian"),
    ("Devon", 100.0, 1.05, "empathetic"), ("Emery", 230.0, 0.95, "empathetic"), ("Finley", 130.0, 1.00, "contrarian"),
    ("Harper", 200.0, 1.05, "empathetic"), ("Jordan", 125.0, 0.95, "empathetic"),
]
MOOD_WORDS = {
    "negative": "terrible awful hate sad angry annoying worst horrible upset tired disaster furious boring miserable "
                "ruined hopeless".split(),
    "neutral": "okay maybe think probably guess fine actually usually perhaps sure normal whatever average".split(),
    "positive": "great wonderful love happy amazing fantastic glad awesome perfect excited lovely brilliant fun "
                "delighted beautiful".split(),
}
TOPIC_WORDS = "dinner work movie weather apartment party coffee trip job meeting car game book class weekend " \
              "sister brother phone museum restaurant".split()
FUNCTION_WORDS = "i you the a it was is that this we they and but to of really just about with so my your".split()
PROSODY = {  # pitch multiplier, pitch range, final contour, energy, syllables/s, harmonic decay
    "negative": (0.85, 0.05, -0.15, 0.10, 3.2, 1.6),
    "neutral": (1.00, 0.10, -0.05, 0.18, 4.3, 1.2),
    "positive": (1.22, 0.22, 0.18, 0.30, 5.4, 0.8),
}
DURATION_BINS = np.arange(1.0, 5.01, 0.5)
POOL_VERSION = 1


def utterance_duration(num_words: int) -> float:
    """The clip length (a 0.5 s bin in [1, 5] s) for an utterance of `num_words` words."""
    duration = 0.4 + 0.25 * num_words
    return float(DURATION_BINS[np.argmin(np.abs(DURATION_BINS - duration))])


def synthesize(character: int, mood: str, duration: float, variant: int, seed: int) -> np.ndarray:
    """A speech-like clip: harmonic voiced syllables with a mood-dependent pitch contour, energy and tempo, pauses."""
    rng = np.random.default_rng([seed, character, LABELS.index(mood), int(duration * 2), variant, 7])
    _, base_f0, loudness, _ = CHARACTERS[character]
    pitch, pitch_range, contour, energy, rate, decay = PROSODY[mood]
    n = int(duration * SAMPLING_RATE)
    t = np.arange(n) / SAMPLING_RATE
    envelope = np.zeros(n)
    accent = np.zeros(n)
    noise_env = np.zeros(n)
    position = rng.uniform(0.03, 0.12)
    while position < duration - 0.12:
        length = rng.uniform(0.55, 1.0) / rate
        start, stop = int(position * SAMPLING_RATE), min(n, int((position + length) * SAMPLING_RATE))
        if stop - start > 8:
            window = np.hanning(stop - start) ** 0.7
            envelope[start:stop] += window * rng.uniform(0.7, 1.0)
            accent[start:stop] += window * rng.uniform(-1.0, 1.0) * pitch_range
            burst = min(stop - start, int(0.02 * SAMPLING_RATE))
            noise_env[start:start + burst] += rng.uniform(0.1, 0.4)
        position += length + (rng.uniform(0.15, 0.35) if rng.random() < 0.18 else rng.uniform(0.01, 0.05))
    progress = t / duration
    f0 = base_f0 * pitch * (1.0 + accent + contour * np.clip(progress - 0.6, 0, None) / 0.4 - 0.04 * progress)
    f0 *= 1.0 + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLING_RATE
    # sin(k·φ) by the Chebyshev recurrence sin(kφ) = 2·cos(φ)·sin((k-1)φ) - sin((k-2)φ): one sin/cos for 8 harmonics
    twice_cos, previous, current = 2 * np.cos(phase), np.zeros(n), np.sin(phase)
    voiced = current.copy()
    for k in range(2, 9):
        previous, current = current, twice_cos * current - previous
        voiced += current / k ** decay
    voiced /= np.max(np.abs(voiced)) + 1e-9
    gain = energy * loudness * rng.uniform(0.85, 1.15)
    signal = gain * envelope * voiced + gain * 0.5 * noise_env * rng.standard_normal(n) + 0.002 * rng.standard_normal(n)
    return np.clip(signal, -0.99, 0.99).astype(np.float32)


def clip_name(character: int, mood: str, duration: float, variant: int) -> str:
    return f"{CHARACTERS[character][0].lower()}_{mood}_{int(duration * 10):02d}ds_v{variant}.wav"


def build_clip_pool(folder: str, seed: int, clip_variants: int) -> str:
    """Synthesise every clip of the pool into `folder` (atomically: a temporary folder renamed when complete)."""
    import soundfile

    if os.path.exists(os.path.join(folder, "COMPLETE")):
        return folder
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".partial-", dir=parent)
    try:
        for character in range(len(CHARACTERS)):
            for mood in LABELS:
                for duration in DURATION_BINS:
                    for variant in range(clip_variants):
                        audio = synthesize(character, mood, float(duration), variant, seed)
                        soundfile.write(os.path.join(tmp, clip_name(character, mood, float(duration), variant)),
                                        audio, SAMPLING_RATE, subtype="PCM_16")
        with open(os.path.join(tmp, "COMPLETE"), "w") as handle:
            handle.write("ok\n")
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished first
            if not os.path.exists(os.path.join(folder, "COMPLETE")):
                raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def make_text(rng, mood: str, ambiguous: bool) -> str:
    num_words = int(np.clip(5 + rng.poisson(6), 5, 30))
    words = []
    for _ in range(num_words):
        draw = rng.random()
        if not ambiguous and draw < 0.28:
            words.append(rng.choice(MOOD_WORDS[mood]))
        elif draw < 0.32:
            other = LABELS[rng.integers(3)]
            words.append(rng.choice(MOOD_WORDS[other]) if ambiguous is False and other == "neutral" else
                         rng.choice(TOPIC_WORDS))
        elif draw < 0.55:
            words.append(rng.choice(TOPIC_WORDS))
        else:
            words.append(rng.choice(FUNCTION_WORDS))
    if not ambiguous and not any(w in MOOD_WORDS[mood] for w in words):
        words[rng.integers(num_words)] = rng.choice(MOOD_WORDS[mood])
    return " ".join(words)


def react(temperament: str, mood: str) -> str:
    if temperament == "contrarian":
        return {"negative": "positive", "positive": "negative", "neutral": "neutral"}[mood]
    return mood


def make_dialogue(rng, turns: int, seed: int, clip_variants: int, clips: str, dialogue_id: str) -> list[dict]:
    """One dialogue: utterances with text, speaker, audio clip and the speaker's mood as `label`."""
    cast = rng.choice(len(CHARACTERS), size=3 if rng.random() < 0.3 else 2, replace=False)
    moods = {int(c): LABELS[rng.integers(3)] for c in cast}
    speaker = int(rng.choice(cast))
    previous = None
    utterances = []
    for index in range(turns):
        if index > 0:
            others = [int(c) for c in cast if c != speaker]
            speaker = speaker if rng.random() < 0.12 else int(rng.choice(others))
        draw = rng.random()
        if previous is not None and previous[0] != speaker and draw < 0.45:
            moods[speaker] = react(CHARACTERS[speaker][3], previous[1])
        elif draw > 0.9:
            moods[speaker] = LABELS[rng.integers(3)]
        mood = moods[speaker]
        text = make_text(rng, mood, ambiguous=rng.random() < 0.2)
        duration = utterance_duration(len(text.split()))
        variant = int(hashlib.sha1(text.encode()).hexdigest(), 16) % clip_variants
        utterances.append({
            "utterance_id": f"{dialogue_id}_utt{index}", "text": text, "speaker": CHARACTERS[speaker][0],
            "audio_path": os.path.join(clips, clip_name(speaker, mood, duration, variant)),
            "audio_start": None, "audio_end": None, "label": mood,
        })
        previous = (speaker, mood)
    return utterances


def _dialogues(options: dict):
    part, split = options["part"], options["split"]
    low, high = options["turns"]
    rng = np.random.default_rng([options["seed"], ["pretraining", "prerecognition"].index(part),
                                 ["train", "validation", "test"].index(split)])
    for d in range(options["num_dialogues"]):
        dialogue_id = f"demo-{'pt' if part == 'pretraining' else 'pr'}-{split}-{d}"
        yield dialogue_id, make_dialogue(rng, int(rng.integers(low, high + 1)), options["seed"],
                                         options["clip_variants"], options["clips"], dialogue_id)


def _generate_demo(spec: str, report: SplitReport):
    options = json.loads(spec)
    rule = ReconstructionRule(**options["rule"])
    for dialogue_id, utterances in _dialogues(options):
        if options["part"] == "pretraining":
            yield {"dialogue_id": dialogue_id, **utterance_columns(utterances)}
            continue
        samples, skips = make_samples(utterances, rule, dialogue_id, require_audio=True)
        for reason, where in skips:
            report.skip(reason, where)
        yield from samples


def split_sizes(total: int, dev_fraction: float, test_fraction: float) -> dict:
    dev, test = max(1, int(round(total * dev_fraction))), max(1, int(round(total * test_fraction)))
    return {"train": max(1, total - dev - test), "validation": dev, "test": test}


def build_demo(
    cache_dir: str | None = None,
    seed: int = 0,
    scale: float = 1.0,
    num_pretrain_dialogues: int = 200,
    pretrain_turns: tuple[int, int] = (20, 40),
    num_labelled_dialogues: int = 360,
    labelled_turns: tuple[int, int] = (10, 20),
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    clip_variants: int = 2,
    rule: ReconstructionRule | dict | None = None,
    return_report: bool = False,
):
    """
    The demo corpus: `(pretraining, prerecognition)`, two `DatasetDict`s with train/validation/test splits.

    `pretraining`: `num_pretrain_dialogues × scale` dialogues of `pretrain_turns` utterances (default 200 × 20–40).
    `prerecognition`: samples (labels negative/neutral/positive) under `rule` from `num_labelled_dialogues × scale`
    other dialogues of `labelled_turns` utterances (default about 2,900 train, 360 validation, 360 test samples).
    Dialogues are split `1 - dev_fraction - test_fraction` / `dev_fraction` / `test_fraction`.
    Wavs go to `<cache_dir or the datasets cache>/tcmp_demo/`; rows are cached by `datasets` under the options.
    With `return_report=True`: `(pretraining, prerecognition, report_pretraining, report_prerecognition)`.
    """
    from datasets import config

    rule = ReconstructionRule.from_value(rule)
    root = os.path.join(cache_dir or config.HF_DATASETS_CACHE, "tcmp_demo")
    clips = os.path.join(root, f"clips-v{POOL_VERSION}-seed{seed}-variants{clip_variants}")
    build_clip_pool(clips, seed, clip_variants)
    results = []
    for part, count, turns, features in (
        ("pretraining", num_pretrain_dialogues, pretrain_turns, dialogue_features()),
        ("prerecognition", num_labelled_dialogues, labelled_turns, prerecognition_features(LABELS)),
    ):
        splits, reports = {}, {}
        for split, size in split_sizes(max(3, int(round(count * scale))), dev_fraction, test_fraction).items():
            spec = {"kind": "demo", "part": part, "seed": seed, "num_dialogues": size, "turns": list(turns),
                    "clip_variants": clip_variants, "clips": clips, "rule": rule.to_dict()}
            splits[split], reports[split] = cached_split(_generate_demo, spec, features, cache_dir, split)
        results.append(finish(f"demo {part}", splits, reports, True,
                              {"tcmp_kind": f"demo-{part}", "seed": seed, "scale": scale, "rule": rule.to_dict()}))
    (pretraining, report_pre), (prerecognition, report_rec) = results
    if return_report:
        return pretraining, prerecognition, report_pre, report_rec
    return pretraining, prerecognition
