"""The device target's errors: :class:`~rctc.errors.RctcError` subclasses, each one line."""

from __future__ import annotations

from rctc.errors import RctcError


class ToolchainMissing(RctcError):
    """A tool the target needs (cross compiler, newlib, make, QEMU) is not installed."""


class DoesNotFit(RctcError):
    """The linked image overflows the board's flash or RAM."""


class BuildError(RctcError):
    """``make`` failed for another reason than a memory overflow."""


class DeviceRunError(RctcError):
    """The image ran but did not finish, or printed no digest."""
