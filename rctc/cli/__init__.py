"""The ``rctc`` command line (click): a thin layer over the Python API.

Layout: ``app`` holds the command group and finds the commands; ``common`` the shared options,
decorators and output helpers; every other module is one command and exposes it as ``command``.
Adding a command is adding one module here. Every user-caused error is printed as one line
``rctc: error: ...`` and exits with code 2.
"""

from __future__ import annotations

from rctc.cli.app import main

__all__ = ["main"]
