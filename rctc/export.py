"""Export a trained compiled model as an inference ONNX model that onnxruntime runs.

Only the forward nodes the model outputs need are exported, in inference semantics
(BatchNormalization in its one-output form with the running statistics, Dropout removed,
no loss), under the original input / output names. Two formats:

``float`` (opset 18): a plain float model, no QuantizeLinear / DequantizeLinear anywhere
    Every parameter is a float32 initializer under its ORIGINAL name, in the shape the input
    file gave it. In rct mode that is ``q * 2^exp`` (exact in float32). Activation
    quantisation (``QuantAct``) becomes float arithmetic ``Div, Round, Clip, Mul`` by the
    scale ``2^e`` (exact for a power of two; ONNX Round rounds half to even like rctc), so
    onnxruntime computes what ``rctc predict`` computes. Integer products become float Conv /
    Gemm / MatMul on the dequantised operands, which are exact while the accumulator stays
    below 2^24 in units of its last bit.
``qdq`` (opset 21, which has int16 Q/DQ)
    As ``float``, but each quantised parameter ``P`` is stored as integers
    ``P_quantized`` (int8 for <= 8 bits, int16 for <= 16) with ``P_scale = 2^exp`` (zero
    point 0); a ``DequantizeLinear`` node produces the float tensor named ``P``, and
    activation quantisation is ``Clip -> QuantizeLinear -> DequantizeLinear`` (the Clip makes
    the int8 range the symmetric ``+-(2^(b-1)-1)`` rctc uses).
    The mapping is also written to the model's ``metadata_props`` (``rctc.parameters``).

A model whose batch was dynamic in the input file exports with a dynamic batch: Reshape
targets the import folded from the bound batch are written in their batch-free form.

onnxruntime note: its default graph optimisations fold BatchNormalization into a preceding
float Conv (ConvBNFusion), which re-rounds the weights; a following activation quantisation can
turn that last-bit change into one quantisation step. The qdq format is not affected (its
weights come from DequantizeLinear) and matches ``rctc predict`` exactly; for bit-exact float
results on models with BatchNormalization pass ``disabled_optimizers=["ConvBNFusion"]``.

An rct graph lowered integer from end to end (the default ``--elementwise integer``) exports its
integer forward ops through ``rctc.export_int``: each as its float ONNX op on dequantised values
with rctc's batch-max exponent and half-up rounding written in the graph (Q/DQ in ``qdq``),
BatchNorm's 16-bit running state dequantised into the BatchNormalization inputs.

fp32-mode graphs export as plain float models. qat-mode graphs keep their fake
quantisation: weights are exported fake-quantised (static, from the weight's max), and
activations get a Q/DQ pair whose power-of-two scale is computed in the graph from the
tensor's max |x|, exactly as rctc's FakeQuant does (so it depends on the batch, as in rctc).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rctc.errors import RctcError
from rctc.export_int import INTEGER_FORWARD_OPS, emit_integer, product_scale
from rctc.export_quant import QuantBuilder
from rctc.fixedpoint import choose_exponent, int_dtype_for_bits, qmax_for_bits
from rctc.ir import Graph, Node, Value
from rctc.onnx_attrs import attrs_to_proto
from rctc.ops import FORWARD_PRODUCT_OF
from rctc.rct_format import atomic_write_bytes
from rctc.slots import bits_value, exp_value, has_slot

FORMATS = ("float", "qdq")
OPSETS = {"float": 18, "qdq": 21}
IR_VERSIONS = {18: 8, 21: 10}
_INT_PRODUCTS = FORWARD_PRODUCT_OF
_SHAPE_INPUT_OPS = {"Reshape", "Expand", "Tile", "ConstantOfShape", "Slice"}


def export_model(graph: Graph, path: str | os.PathLike[str], format: str = "float") -> onnx.ModelProto:  # noqa: A002
    """Build the inference model (see the module docstring), check it, write it atomically."""
    model = build_export(graph, format)
    atomic_write_bytes(path, model.SerializeToString())
    return model


def build_export(graph: Graph, format: str = "float") -> onnx.ModelProto:  # noqa: A002
    if format not in FORMATS:
        raise RctcError(f"unknown export format {format!r}; use one of {', '.join(FORMATS)}")
    mode = str(graph.meta.get("mode", "fp32"))
    if format == "qdq" and mode == "fp32":
        raise RctcError("--format qdq needs a model compiled with --mode rct or --mode qat "
                        "(an fp32 model has no quantisation); use --format float")
    model = _Exporter(graph, format).run()
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - an exporter bug, reported with what the checker said
        raise RctcError(f"export produced an invalid ONNX model ({type(exc).__name__}: {exc}); please report") from exc
    return model


class _Exporter:
    def __init__(self, g: Graph, fmt: str) -> None:
        self.g = g
        self.fmt = fmt
        self.mode = str(g.meta.get("mode", "fp32"))
        self.opset = OPSETS[fmt]
        self.qb = QuantBuilder(self._unique, fmt)
        self.rep: dict[str, str] = {}  # IR value name -> ONNX tensor name holding its (dequantised) value
        self.scales: dict[str, str] = {}  # IR exponent value name -> ONNX tensor holding 2^e (integer graphs)
        self.param_map: dict[str, dict[str, Any]] = {}
        self._used: set[str] = set(g.values)
        self.outputs = [g.value(o) for o in g.meta["model_outputs"]]
        needed = g.ancestors(self.outputs)
        self.fwd = [n for n in g.nodes if n.name in needed]
        self.dynamic = self._batch_is_dynamic()

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return self.qb.nodes

    @property
    def inits(self) -> dict[str, np.ndarray]:
        return self.qb.inits

    def _unique(self, base: str) -> str:
        name, i = base, 0
        while name in self._used:
            i += 1
            name = f"{base}_{i}"
        self._used.add(name)
        return name

    # ----- operands -----------------------------------------------------
    def value(self, v: Value | None) -> str:
        if v is None:
            return ""
        if v.name in self.rep:
            return self.rep[v.name]
        if v.kind == "input":
            self.rep[v.name] = v.name
        elif v.kind == "param" and has_slot(v):
            self._slot_param(v)
        elif v.kind == "const" and self.dynamic and v.meta.get("batch_free") is not None:
            self.inits[v.name] = np.asarray(v.meta["batch_free"], dtype=np.int64)
            self.rep[v.name] = v.name
        elif v.kind in ("param", "buffer", "const"):
            self.inits[v.name] = np.asarray(v.data).reshape(self._file_shape(v))
            self.rep[v.name] = self._layout(v, v.name)
        else:
            raise RctcError(f"export: value {v.name!r} is used before it is produced (internal error; please report)")
        return self.rep[v.name]

    def _slot_param(self, p: Value) -> None:
        exp = int(exp_value(self.g, p).data)
        bits = int(bits_value(self.g, p).data)
        self._weight(p.name, np.asarray(p.data).reshape(self._file_shape(p)), exp, bits, p.name)
        self.rep[p.name] = self._layout(p, p.name)

    @staticmethod
    def _file_shape(v: Value) -> tuple[int, ...]:
        """The shape the input file gave ``v`` (import folding may have reshaped a weight)."""
        return tuple(v.meta.get("source_shape", v.shape or ()))

    def _layout(self, v: Value, name: str) -> str:
        """``name`` (a tensor in the file's shape) reshaped to the shape the graph uses, if it differs."""
        if "source_shape" not in v.meta or tuple(v.meta["source_shape"]) == tuple(v.shape or ()):
            return name
        target = self.qb.const(f"{v.name}.layout_shape", np.array(v.shape, np.int64))
        out = self._unique(f"{v.name}.layout")
        self._add("Reshape", [name, target], [out], f"{v.name}/layout")
        return out

    def _weight(self, name: str, q: np.ndarray, exp: int, bits: int, out: str) -> None:
        """A quantised weight q * 2^exp: float initializer ``out`` or integers + DequantizeLinear."""
        if self.fmt == "float":
            self.inits[out] = (q.astype(np.float64) * math.ldexp(1.0, exp)).astype(np.float32)
            self._used.add(out)
            self.param_map[name] = {"initializer": out, "exp": exp, "bits": bits}
        else:
            qname, sname = self.qb.dequantize_weight(name, q, exp, bits, out)
            self.param_map[name] = {"quantized": qname, "scale": sname, "exp": exp,
                                    "bits": bits, "dtype": str(self.inits[qname].dtype)}

    # ----- nodes --------------------------------------------------------
    def run(self) -> onnx.ModelProto:
        for n in self.fwd:
            self.emit(n)
        out_infos = []
        for v in self.outputs:
            name = self.rep[v.name]
            if name != v.name:
                self.nodes.append(helper.make_node("Identity", [name], [v.name], name=f"{v.name}/output"))
            out_infos.append(self._info(v))
        dynamic = self.dynamic
        in_infos = [self._info(v, dynamic) for v in self.g.inputs if v.name in self.rep]
        if dynamic:
            out_infos = [self._info(v, True) for v in self.outputs]
        graph = helper.make_graph(
            self.nodes, self.g.name, in_infos, out_infos,
            initializer=[numpy_helper.from_array(np.asarray(a), k) for k, a in self.inits.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="rctc")
        model.ir_version = IR_VERSIONS[self.opset]
        helper.set_model_props(model, {
            "rctc.export_format": self.fmt,
            "rctc.mode": self.mode,
            "rctc.step": str(self.g.meta.get("step", 0)),
            "rctc.parameters": json.dumps(self.param_map, sort_keys=True),
        })
        return model

    def _batch(self) -> int:
        return int(self.g.value(self.g.meta["model_inputs"][0]).shape[0])

    def _batch_is_dynamic(self) -> bool:
        """Keep the batch dimension symbolic unless a constant shape in the graph pins it.

        A Reshape target the import computed from the bound batch has a batch-free form
        (``Value.meta["batch_free"]``, see ``rctc.batch_free.batch_free_targets``), which the
        export writes instead, so it does not pin the batch; one with none (``None``) pins it.
        """
        b = self._batch()
        for n in self.fwd:
            if n.op_type in _SHAPE_INPUT_OPS:
                for v in n.inputs[1:]:
                    if v is None or v.data is None or not v.data.size:
                        continue
                    if n.op_type == "Reshape" and v.meta.get("batch_free") is not None:
                        continue
                    if int(v.data.reshape(-1)[0]) == b or ("batch_free" in v.meta and v.meta["batch_free"] is None):
                        return False
        return all(v.shape and v.shape[0] == b for v in self.outputs)

    def _info(self, v: Value, dynamic: bool = False) -> onnx.ValueInfoProto:
        shape: list[Any] = list(v.shape or [])
        if dynamic and shape:
            shape[0] = "batch"
        return helper.make_tensor_value_info(v.name, helper.np_dtype_to_tensor_dtype(v.dtype), shape)

    def _add(self, op: str, inputs: list[str], outputs: list[str], name: str, attrs: dict[str, Any] | None = None
             ) -> None:
        node = helper.make_node(op, inputs, outputs, name=self._unique(name))
        if attrs:
            node.attribute.extend(attrs_to_proto(attrs))
        self.nodes.append(node)

    def emit(self, n: Node) -> None:
        outs = n.outputs
        if n.domain == "rctc":
            return self._emit_rctc(n)
        if n.op_type in ("Dropout", "Identity"):
            self.rep[outs[0].name] = self.value(n.inputs[0])
            return
        ins = [self.value(v) for v in n.inputs]
        attrs = dict(n.attrs)
        out_names = [o.name for o in outs]
        if n.op_type == "BatchNormalization":
            attrs = {k: v for k, v in attrs.items() if k == "epsilon"}
            out_names = out_names[:1]
        if n.op_type == "Reshape" and self.dynamic and n.inputs[1].meta.get("batch_free") is not None:
            attrs.pop("allowzero", None)  # the batch-free target's 0 entries copy the input's dims
        while ins and ins[-1] == "":
            ins.pop()
        self._add(n.op_type, ins, out_names, n.name, attrs)
        for o in out_names:
            self.rep[o] = o

    def _emit_rctc(self, n: Node) -> None:
        op, out = n.op_type, n.outputs[0]
        if op == "QuantAct":
            x = self.value(n.inputs[0])
            bits = int(n.attrs["bits"])
            run_max = float(np.asarray(n.inputs[1].data))
            exp = choose_exponent(run_max, bits) if run_max > 0 else None
            self.rep[out.name] = self.qb.act(x, out.name, bits, exp)
            self.scales[n.outputs[1].name] = self.qb.scale_of[out.name]
        elif op in _INT_PRODUCTS:
            a, b = self.value(n.inputs[0]), self.value(n.inputs[2])
            self._add(_INT_PRODUCTS[op], [a, b], [out.name], n.name, dict(n.attrs))
            self.rep[out.name] = out.name
            product_scale(self, n)
        elif op == "Dequantize":
            self._dequantize(n)
        elif op == "FakeQuant":
            self._fake_quant(n)
        elif op in INTEGER_FORWARD_OPS:
            emit_integer(self, n)
        else:
            raise RctcError(f"export: no ONNX form for rctc op {op} (node {n.name!r}); export this model "
                            "from --mode fp32 or report the op")

    def _dequantize(self, n: Node) -> None:
        """y = alpha * acc * 2^e (+ beta * bias along bias_axis): acc's representation is already scaled."""
        out = n.outputs[0]
        y = self.value(n.inputs[0])
        alpha = float(n.attrs.get("alpha", 1.0))
        bias = n.input(2)
        if alpha != 1.0:
            c = self.qb.const(f"{n.name}.alpha", np.float32(alpha))
            tmp = self._unique(f"{out.name}.scaled") if bias is not None else out.name
            self._add("Mul", [y, c], [tmp], f"{n.name}.alpha")
            y = tmp
        if bias is None:
            self.rep[out.name] = y
            return
        b = self.value(bias)
        beta = float(n.attrs.get("beta", 1.0))
        if beta != 1.0:
            c = self.qb.const(f"{n.name}.beta", np.float32(beta))
            tmp = self._unique(f"{bias.name}.beta")
            self._add("Mul", [b, c], [tmp], f"{n.name}.beta")
            b = tmp
        if int(n.attrs.get("bias_axis", -1)) == 1 and len(bias.shape or ()) == 1 and len(out.shape) > 2:
            shape = self.qb.const(f"{n.name}.bias_shape", np.array([1, -1] + [1] * (len(out.shape) - 2), np.int64))
            tmp = self._unique(f"{bias.name}.bcast")
            self._add("Reshape", [b, shape], [tmp], f"{n.name}.bias_reshape")
            b = tmp
        self._add("Add", [y, b], [out.name], f"{n.name}.bias")
        self.rep[out.name] = out.name

    def _fake_quant(self, n: Node) -> None:
        """qat: static fake quantisation of a parameter, dynamic (batch max) of an activation."""
        x, out = n.inputs[0], n.outputs[0]
        bits = int(n.attrs["bits"])
        if x.kind == "param" and x.data is not None:
            data = np.asarray(x.data, np.float32)
            exp = choose_exponent(float(np.max(np.abs(data))) if data.size else 0.0, bits)
            qmax = qmax_for_bits(bits)
            q = np.clip(np.rint(data * np.float32(math.ldexp(1.0, -exp))), -qmax, qmax)
            others = [u for u, _ in x.uses if u.op_type != "FakeQuant" and u.name in {m.name for m in self.fwd}]
            name = x.name if not others else self._unique(f"{x.name}.fq")
            self._weight(x.name, q.astype(int_dtype_for_bits(bits)).reshape(self._file_shape(x)), exp, bits, name)
            self.rep[out.name] = self._layout(x, name)
            return
        self.rep[out.name] = self.qb.act(self.value(x), out.name, bits, None)
