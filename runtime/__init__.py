"""The numpy runtime: executor, kernels, training loop."""

from __future__ import annotations
