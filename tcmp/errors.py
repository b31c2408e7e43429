"""
The errors of tcmp. Each is raised with a message that names the bad input (flag, file, field, value); the scripts
print those of `SCRIPT_ERRORS` as one line, without a traceback.
"""


class TCMPInputError(ValueError):
    """An utterance the processor cannot turn into model inputs; the message names the dialogue and utterance."""


class CheckpointError(OSError):
    """A saved TCMP model that cannot be loaded safely (truncated, corrupted); the message names the file."""


class ArgumentsError(ValueError):
    """A flag with a bad value, or flags that contradict each other; the message names the flag."""


class PreflightError(RuntimeError):
    """A run that would fail later (unwritable folder, full disk, broken checkpoint); the message names the folder."""


class DiskSpaceError(PreflightError):
    """The output disk fell below `--min_free_disk_gb` during a run; the message says what was kept and how to go on."""


class DataError(ValueError):
    """Bad input data (a file, a row, a field or a value); the message says which and why."""


class MissingFileError(DataError, FileNotFoundError):
    """A required input file or folder does not exist."""


class AudioLoadError(DataError, TCMPInputError):
    """An audio file is missing, unreadable, empty, contains NaN, or has an absurd sample rate."""


class PickleRefusedError(DataError):
    """Reading a joblib/pickle file was refused because `allow_pickle=True` was not given."""


class TrainingDiverged(RuntimeError):
    """A training loss or weights that turned NaN/infinite; the message says at which step and what to try."""


class TrainingInterrupted(KeyboardInterrupt):
    """
    Ctrl-C during training; the message names the newest complete checkpoint and how to continue from it.
    `stopped` says where training stopped ("stopped at step 3 of 8"), for a caller that words its own advice.
    """

    def __init__(self, message: str, stopped: str = ""):
        super().__init__(message)
        self.stopped = stopped


SCRIPT_ERRORS = (ArgumentsError, PreflightError, DataError, CheckpointError, TrainingDiverged)
"""What a training script reports as one line (`tcmp.preflight.run_as_script`)."""

__all__ = [
    "TCMPInputError", "CheckpointError", "ArgumentsError", "PreflightError", "DiskSpaceError", "DataError",
    "MissingFileError", "AudioLoadError", "PickleRefusedError", "TrainingDiverged", "TrainingInterrupted", "SCRIPT_ERRORS",
]
