"""Static energy and memory analysis of compiled training graphs, and the runtime counters.

Modules: ``profiles`` (TOML energy profiles), ``values`` (widths, traffic classes, layers),
``costs`` (the per-node cost functions), ``counts`` (counts and their energy), ``memory``
(the buffer plan), ``model`` (a graph bound to a profile), ``baseline`` (qat / fp32
baselines), ``report`` (``estimate``: the full report), ``counter`` (runtime measurement).
The analysis reads graphs and never changes them.
"""

from __future__ import annotations
