"""The toolkit's exceptions.

Every error a user can cause derives from :class:`TLRadiologyError` and carries the exit status the command line
uses for it: 2 for bad input (a file, a manifest row, an option), 3 for a refused opening of the sealed test set,
1 for a failure that is not the user's input (for example a search whose trials all failed).

Messages say what was expected, what was received and how to fix it, and name the file, manifest row or option.
They are written on one line so the command line can print them as ``error: ...``.
"""

from __future__ import annotations

__all__ = [
    "TLRadiologyError",
    "InputError",
    "OptionError",
    "ManifestError",
    "ImageReadError",
    "LeakageError",
    "RunDirError",
    "RunDirBusyError",
    "SealError",
    "SealBrokenError",
    "AuditKeyError",
    "WeightsNotAvailableError",
    "UntrustedFileError",
    "SearchFailedError",
]


class TLRadiologyError(Exception):
    """Base class of every error the toolkit raises on purpose.

    Attributes:
        exit_code: the status ``tl-radiology`` exits with when this error reaches the command line.
    """

    exit_code = 1


class InputError(TLRadiologyError, ValueError):
    """Bad input from the user: a file, a manifest row, an option or a value (exit status 2)."""

    exit_code = 2


class OptionError(InputError, KeyError):
    """An unknown name for a string option (backbone, recipe, preset, ...). The message suggests close matches."""

    def __str__(self) -> str:  # KeyError would quote the message; show it as written.
        return str(self.args[0]) if self.args else ""


class ManifestError(InputError):
    """A manifest that cannot be used; the message lists every bad row and column at once.

    Attributes:
        problems: list of ``(row, column, message)`` tuples; ``row`` is the CSV line number (header = line 1)
            or ``None`` for problems of the whole manifest.
    """

    def __init__(self, message: str, problems=None):
        super().__init__(message)
        self.problems = list(problems or [])


class ImageReadError(InputError):
    """An image file that cannot be read as asked (truncated, not DICOM, no pixel data, no decoder, ...)."""


class LeakageError(InputError):
    """A patient in two splits, or another leak between train/validation and the test set."""


class RunDirError(InputError):
    """A run directory that cannot be used (unwritable, missing a file it should have, from another version)."""


class RunDirBusyError(RunDirError):
    """Another process is writing to the same run directory."""


class SealError(TLRadiologyError):
    """A refused opening of the sealed test set (exit status 3)."""

    exit_code = 3


class SealBrokenError(SealError):
    """A test file or label changed after the test set was sealed; the message names the cases."""


class AuditKeyError(InputError):
    """The audit key is missing, unreadable, inside the run directory or not the key a run was sealed with."""


class WeightsNotAvailableError(InputError):
    """Pretrained weights were asked for but are not available locally (never a silent fallback)."""


class UntrustedFileError(InputError):
    """A file that asks to run code the toolkit did not expect (a crafted pickle); nothing from it was run."""


class SearchFailedError(TLRadiologyError):
    """A hyperparameter search produced no completed trial; the message gives the trials' errors."""
