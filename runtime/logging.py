"""Per-step JSON-lines training log (``rctc train --log run.jsonl``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rctc.errors import RctcError
from rctc.ir import Graph
from rctc.runtime.trainer import StepRecord


class StepLogger:
    """Writes one JSON object per training step: loss, accuracy, lr, per-parameter bits and Gavg,
    bit changes, and the measured energy of the step (``measured_energy_pj``) when a counter runs."""

    def __init__(self, path: Path, graph: Graph) -> None:
        try:
            self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise RctcError(f"{path}: cannot open the log file ({exc.strerror})") from exc
        self.graph = graph

    def record(self, rec: StepRecord) -> dict[str, Any]:
        row: dict[str, Any] = {"step": rec.step, "epoch": rec.epoch, "loss": rec.loss, "lr": rec.lr}
        if rec.accuracy is not None:
            row["accuracy"] = rec.accuracy
        row.update({k: v for k, v in rec.stats.items() if not k.startswith("_")})
        return row

    def write(self, rec: StepRecord) -> None:
        self._f.write(json.dumps(self.record(rec)) + "\n")

    def close(self) -> None:
        self._f.close()
