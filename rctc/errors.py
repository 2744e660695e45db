"""Errors a user can cause. The CLI prints ``str(err)`` as one line and exits with code 2."""

from __future__ import annotations


class RctcError(Exception):
    """A problem with the user's input or options: one line naming it and what to do."""


class UnsupportedOpError(RctcError):
    """The model uses operators rctc cannot compile."""


class DataError(RctcError):
    """Training / evaluation data cannot be used with the model."""


class TrainingDiverged(RctcError):
    """The loss became NaN or Inf; the last good model is kept."""


class NativeUnavailable(RctcError):
    """The native backend cannot be built here (no C compiler, or it failed); ``str`` is one line."""
