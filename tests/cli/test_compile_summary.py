"""compile's float-island line: names when there are few, counts per op type when there are many."""

from __future__ import annotations

from rctc.cli.compile import _islands_line


def test_few_islands_are_named_and_many_are_counted() -> None:
    few = [{"node": f"n{i}", "op_type": "Sigmoid"} for i in range(3)]
    assert _islands_line(few) == "n0 (Sigmoid), n1 (Sigmoid), n2 (Sigmoid)"
    many = [{"node": f"g{i}", "op_type": "Gather"} for i in range(7)] + [{"node": f"t{i}", "op_type": "Tanh"}
                                                                          for i in range(4)]
    line = _islands_line(many)
    assert line.startswith("11 nodes: Gather x7, Tanh x4") and "g0" not in line
    assert _islands_line([]) == "none"
