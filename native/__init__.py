"""The native backend: rctc's C kernel library and the host loader that builds and loads it.

``rctc.native.build.load_library()`` compiles ``csrc/`` (plus any generated file) with the
system C compiler into a cached shared object and loads it with ctypes;
``rctc.native.kernels`` gives typed numpy-facing wrappers of the kernels;
``rctc.native.codegen`` writes C for a graph's integer nodes and ``rctc.native.executor`` runs
training steps, eval and predict with it (``rctc.native.backend`` chooses the backend). The
package builds on rctc.runtime (never the reverse); rctc.api and the CLI import it lazily to
choose a backend; the frontend, passes and analyses never import it.
"""

from __future__ import annotations
