"""The native backend: rctc's C kernel library and the host loader that builds and loads it.

``rctc.native.build.load_library()`` compiles ``csrc/`` (plus any generated file) with the
system C compiler into a cached shared object and loads it with ctypes;
``rctc.native.kernels`` gives typed numpy-facing wrappers of the kernels. This package reads
the graph (through the code generator, later); nothing outside the backends imports it.
"""

from __future__ import annotations
