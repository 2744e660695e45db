"""Compiler passes over the rctc IR, one file each; ``registry`` maps names to passes."""

from __future__ import annotations
