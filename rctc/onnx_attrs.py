"""Conversion between ONNX AttributeProto and the IR's plain-Python attribute values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

AP = onnx.AttributeProto


def attr_value(a: onnx.AttributeProto) -> Any:
    """One attribute as int / float / str / list / np.ndarray."""
    if a.type == AP.INT:
        return int(a.i)
    if a.type == AP.FLOAT:
        return float(a.f)
    if a.type == AP.STRING:
        return a.s.decode("utf-8")
    if a.type == AP.INTS:
        return [int(x) for x in a.ints]
    if a.type == AP.FLOATS:
        return [float(x) for x in a.floats]
    if a.type == AP.STRINGS:
        return [s.decode("utf-8") for s in a.strings]
    if a.type == AP.TENSOR:
        return numpy_helper.to_array(a.t)
    return helper.get_attribute_value(a)


def attrs_from_proto(attrs: Iterable[onnx.AttributeProto]) -> dict[str, Any]:
    return {a.name: attr_value(a) for a in attrs}


def attrs_to_proto(attrs: dict[str, Any]) -> list[onnx.AttributeProto]:
    """The IR attributes back as AttributeProtos (lists of ints stay INTS, arrays become TENSOR)."""
    out = []
    for k in sorted(attrs):
        v = attrs[k]
        if isinstance(v, np.ndarray):
            out.append(helper.make_attribute(k, numpy_helper.from_array(v)))
        elif isinstance(v, (list, tuple)) and len(v) == 0:
            out.append(helper.make_attribute(k, [], attr_type=AP.INTS))
        elif isinstance(v, (bool, np.bool_)):
            out.append(helper.make_attribute(k, int(v)))
        elif isinstance(v, (np.integer,)):
            out.append(helper.make_attribute(k, int(v)))
        elif isinstance(v, (np.floating,)):
            out.append(helper.make_attribute(k, float(v)))
        else:
            out.append(helper.make_attribute(k, v))
    return out
