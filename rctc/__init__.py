"""rctc: a model compiler for Resource Constrained Training (RCT) on edge devices."""

from __future__ import annotations

__version__ = "0.1.0"
