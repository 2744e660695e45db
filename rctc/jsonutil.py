"""JSON encoding of numpy values, shared by the .rct metadata, checkpoints and the CLI."""

from __future__ import annotations

from typing import Any

import numpy as np


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` hook: numpy scalars / arrays and sets become plain JSON."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
