"""Runtime kernels. Importing this package fills the dispatch table ``KERNELS``."""

from __future__ import annotations

import importlib
import pkgutil

from rctc.runtime.kernels.registry import KERNELS, KernelContext, register

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _mod != "registry" and not _mod.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod}")

__all__ = ["KERNELS", "KernelContext", "register"]
