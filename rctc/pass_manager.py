"""A plain pass manager: runs named passes from the registry, verifying the graph after each."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rctc.ir import Graph, IRError
from rctc.options import CompileOptions

Pass = Callable[[Graph, CompileOptions], None]


@dataclass
class PassRun:
    name: str
    seconds: float
    nodes_after: int


@dataclass
class PassManager:
    registry: dict[str, Pass]
    print_between: bool = False
    echo: Callable[[str], None] = print
    on_pass: Callable[[str], None] | None = None
    runs: list[PassRun] = field(default_factory=list)

    def run(self, graph: Graph, names: Sequence[str], options: CompileOptions) -> Graph:
        for name in names:
            fn = self.registry[name]
            t0 = time.perf_counter()
            fn(graph, options)
            try:
                graph.verify()
            except IRError as exc:
                raise IRError(f"after pass {name!r}: {exc}") from exc
            self.runs.append(PassRun(name, time.perf_counter() - t0, len(graph.nodes)))
            if self.print_between:
                self.echo(f"// ----- after {name} -----\n{graph}")
            if self.on_pass is not None:
                self.on_pass(name)
        return graph

    def timing_report(self) -> str:
        total = sum(r.seconds for r in self.runs) or 1e-12
        lines = [f"{'pass':<18} {'ms':>9} {'%':>6} {'nodes':>6}"]
        for r in self.runs:
            lines.append(f"{r.name:<18} {r.seconds * 1e3:9.2f} {100 * r.seconds / total:6.1f} {r.nodes_after:6d}")
        lines.append(f"{'total':<18} {total * 1e3:9.2f}")
        return "\n".join(lines)
