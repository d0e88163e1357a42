"""The one base class of every error that means "the input is wrong" (a bad file, value, model
directory or text). The CLI turns these — and only these — into one line and exit code 2; any
other exception is a bug and keeps its traceback."""


class NumgenError(Exception):
    """A user-facing error: the message names the bad input and what to do about it."""


class ConfigError(NumgenError, ValueError):
    """A setting out of range or of the wrong kind: a model or sampling option, a config field."""


class DataError(NumgenError):
    """A data file is missing or broken; the message names the file and what to do."""


class ComposeError(NumgenError, ValueError):
    """Input that cannot be written or read (bad text, a blank image ...); says which and why."""


class NonFiniteImage(NumgenError):
    """A model drew NaN or infinite pixels: weights that overflow (damaged, or a diverged run)."""


class TrainingError(NumgenError):
    """Training cannot start or go on; the message says why and what to do."""
