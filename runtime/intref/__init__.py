"""Integer reference algorithms of rct mode's "integer from end to end" (DESIGN.md, "The RCT numerics").

Pure numpy functions on ``(q, e)`` integer tensors (value ``q * 2^e``), one module per family:

* :mod:`.core`: the number format, rounding shifts, requantise, alignment, fixed-point
  reciprocal and reciprocal square root;
* :mod:`.pointwise`: ReLU, Clip / ReLU6, LeakyReLU, HardSigmoid, HardSwish;
* :mod:`.arith`: Add, Sub, Mul, Concat;
* :mod:`.pool`: MaxPool, AveragePool, GlobalAveragePool, ReduceMean;
* :mod:`.norm`: BatchNormalization (training, inference, running state), LayerNormalization;
* :mod:`.expo`: i-exp, log2, Exp, Softmax, Softmax + cross-entropy, Sigmoid, Tanh;
* :mod:`.gelu`: Erf, GELU.

Each function is the specification its C kernel implements bit for bit: integer arithmetic
only (int64 numpy, Python ints for per-tensor and per-channel scalars), rounding and error
bound stated in its docstring and in docs/numerics.md. Nothing here imports a kernel
registry, the executor or a backend: the graph wiring calls these functions.
"""

from __future__ import annotations
