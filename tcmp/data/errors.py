"""Exceptions of the data module: every one is a `ValueError` whose message names the file/row/field/value."""


class DataError(ValueError):
    """Bad input data (a file, a row, a field or a value); the message says which and why."""


class MissingFileError(DataError, FileNotFoundError):
    """A required input file or folder does not exist."""


class AudioLoadError(DataError):
    """An audio file is missing, unreadable, empty, contains NaN, or has an absurd sample rate."""


class PickleRefusedError(DataError):
    """Reading a joblib/pickle file was refused because `allow_pickle=True` was not given."""
