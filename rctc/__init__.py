"""rctc: a model compiler for Resource Constrained Training (RCT) on edge devices.

The Python API: ``rctc.compile(model, **options)`` -> ``CompiledModel`` (train, evaluate,
predict, estimate, export, save) and ``rctc.load(path)``.
"""

from __future__ import annotations

from rctc.api import CompiledModel, compile, load
from rctc.errors import RctcError
from rctc.options import CompileOptions

__version__ = "0.1.0"

__all__ = ["CompiledModel", "CompileOptions", "RctcError", "compile", "load", "__version__"]
