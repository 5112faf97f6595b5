"""Typed exceptions: every user-facing error says what was expected, what arrived and how to fix it."""


class RecsysError(Exception):
    """Base class of every error recsys raises on purpose."""


class DataValidationError(RecsysError, ValueError):
    """A table a user brought breaks its contract (missing column, bad value, empty table, ...)."""


class LeakageError(RecsysError, ValueError):
    """Test data leaks into training data, or features carry information from after the split."""


class ConfigError(RecsysError, ValueError):
    """A configuration names an unknown key or an invalid value."""


class ArtifactError(RecsysError, OSError):
    """A saved artifact (bundle, index, checkpoint) is missing, corrupt, tampered with or incompatible."""


class MissingDependencyError(RecsysError, ImportError):
    """An optional dependency is not installed; the message carries the exact install command."""


class WorkerError(RecsysError, RuntimeError):
    """A worker process of a parallel job died or could not start (killed, out of memory, a script without a
    ``__main__`` guard); what it had published is kept."""


class RecsysWarning(UserWarning):
    """Base class of every warning recsys emits on purpose: something worked, but not as asked."""


class RankerSkippedWarning(RecsysWarning):
    """A ranker was asked for but the data cannot train one (too few labelled clicks): feeds rank by the
    two-tower score and carry no pCTR / pCVR. The message says what the data holds and what to add."""
