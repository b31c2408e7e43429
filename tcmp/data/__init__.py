"""
Datasets for TCMP: P-MELD, P-IEM, P-DD and UMD-style dialogues (from raw corpora or the original release), the
embedded demo corpus, lazy pre-training windows, audio decoding, Table-1 statistics, and the overlap of a pre-training
corpus with evaluation data. See `tcmp/data/README.md`.
"""

from ..errors import AudioLoadError, DataError, MissingFileError, PickleRefusedError
from ..audio_utils import extract_audio, load_audio
from .common import BuildReport, SplitReport
from .dailydialog import build_dd_dialogues, build_pdd
from .demo import build_demo
from .dialogue_targets import prerecognition_dialogues
from .iemocap import build_piem
from .loading import load_prerecognition_dataset, load_pretraining_dataset
from .meld import build_meld_dialogues, build_pmeld
from .overlap import exclude_overlap, find_overlap
from .release import import_release
from .rule import ReconstructionRule, make_samples
from .stats import PAPER_TABLE1, dataset_stats, format_stats
from .umd import build_umd
from .windows import PretrainingWindows

__all__ = [
    "AudioLoadError", "BuildReport", "DataError", "MissingFileError", "PAPER_TABLE1", "PickleRefusedError",
    "PretrainingWindows", "ReconstructionRule", "SplitReport", "build_dd_dialogues", "build_demo", "build_meld_dialogues", "build_pdd", "build_piem", "build_pmeld", "build_umd",
    "dataset_stats", "exclude_overlap", "extract_audio", "find_overlap", "format_stats", "import_release", "load_audio",
    "load_prerecognition_dataset", "load_pretraining_dataset", "make_samples", "prerecognition_dialogues",
]
