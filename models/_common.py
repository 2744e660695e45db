"""Shared helpers for the model builders: a tiny graph builder with PyTorch-style init.

Every builder creates one :class:`GraphBuilder`, adds layers in graph order and calls
:meth:`GraphBuilder.finish`. Initial weights come from ``np.random.default_rng(seed)`` and
are drawn in the order the layers are added (weight before bias), so a builder with the
same seed always produces the same bytes.

Init follows PyTorch's defaults: conv / linear weights and biases are
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (what ``kaiming_uniform_(a=sqrt(5))`` gives),
BatchNorm / LayerNorm scale 1 and shift 0, running mean 0 and variance 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
BATCH_DIM = "N"
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # ONNX convention: running = momentum * running + (1 - momentum) * batch
LN_EPSILON = 1e-5
PRODUCER = "rctc.models"
PRODUCER_VERSION = "0.1.0"


class GraphBuilder:
    """Collects nodes and initializers of one ONNX graph; each helper returns its output name."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    # ----------------------------------------------------------------- tensors
    def _claim(self, name: str) -> str:
        if name in self._names:
            raise ValueError(f"duplicate tensor/node name {name!r}")
        self._names.add(name)
        return name

    def tensor(self, name: str, value: np.ndarray) -> str:
        """Add an initializer holding ``value`` (dtype kept as given)."""
        self.initializers.append(numpy_helper.from_array(np.asarray(value), self._claim(name)))
        return name

    def uniform(self, name: str, shape: Sequence[int], fan_in: int) -> str:
        """Initializer drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) in float32."""
        bound = 1.0 / np.sqrt(fan_in)
        value = self.rng.uniform(-bound, bound, size=tuple(shape)).astype(np.float32)
        return self.tensor(name, value)

    def normal(self, name: str, shape: Sequence[int], std: float = 1.0) -> str:
        """Initializer drawn from N(0, std^2) in float32 (PyTorch's nn.Embedding default is std 1)."""
        value = (self.rng.standard_normal(size=tuple(shape)) * std).astype(np.float32)
        return self.tensor(name, value)

    def full(self, name: str, shape: Sequence[int], fill: float) -> str:
        return self.tensor(name, np.full(tuple(shape), fill, dtype=np.float32))

    def scalar(self, name: str, value: float) -> str:
        """A float32 scalar (0-d) constant initializer."""
        return self.tensor(name, np.array(value, dtype=np.float32))

    def ints(self, name: str, values: Sequence[int]) -> str:
        """An int64 1-d constant initializer (e.g. a Reshape target shape)."""
        return self.tensor(name, np.array(list(values), dtype=np.int64))

    # ------------------------------------------------------------------- nodes
    def op(self, op_type: str, inputs: Sequence[str], name: str, output: str | None = None,
           **attrs: object) -> str:
        """Add one single-output node called ``name``; its output tensor is ``output`` or ``name``."""
        out = output if output is not None else name
        if out != name:
            self._claim(out)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self._claim(name), **attrs))
        return out

    def relu(self, x: str, name: str) -> str:
        return self.op("Relu", [x], name)

    def conv(self, prefix: str, x: str, cin: int, cout: int, kernel: int, stride: int = 1,
             pad: int | None = None, group: int = 1, bias: bool = True) -> str:
        """Conv with weight ``prefix.weight`` [cout, cin/group, k, k] (+ ``prefix.bias``)."""
        pad = kernel // 2 if pad is None else pad
        fan_in = cin // group * kernel * kernel
        inputs = [x, self.uniform(f"{prefix}.weight", (cout, cin // group, kernel, kernel), fan_in)]
        if bias:
            inputs.append(self.uniform(f"{prefix}.bias", (cout,), fan_in))
        return self.op("Conv", inputs, prefix, kernel_shape=[kernel, kernel], strides=[stride, stride],
                       pads=[pad] * 4, group=group, dilations=[1, 1])

    def batchnorm(self, prefix: str, x: str, channels: int) -> str:
        """Inference-form BatchNormalization with PyTorch-named scale/shift/running stats."""
        inputs = [x, self.full(f"{prefix}.weight", (channels,), 1.0),
                  self.full(f"{prefix}.bias", (channels,), 0.0),
                  self.full(f"{prefix}.running_mean", (channels,), 0.0),
                  self.full(f"{prefix}.running_var", (channels,), 1.0)]
        return self.op("BatchNormalization", inputs, prefix, epsilon=BN_EPSILON, momentum=BN_MOMENTUM)

    def conv_bn(self, conv_prefix: str, bn_prefix: str, x: str, cin: int, cout: int, kernel: int,
                stride: int = 1, group: int = 1) -> str:
        """Bias-free conv followed by BatchNormalization."""
        y = self.conv(conv_prefix, x, cin, cout, kernel, stride=stride, group=group, bias=False)
        return self.batchnorm(bn_prefix, y, cout)

    def linear(self, prefix: str, x: str, fin: int, fout: int, output: str | None = None) -> str:
        """PyTorch nn.Linear as Gemm(transB=1): weight [fout, fin], bias [fout]."""
        w = self.uniform(f"{prefix}.weight", (fout, fin), fin)
        b = self.uniform(f"{prefix}.bias", (fout,), fin)
        return self.op("Gemm", [x, w, b], prefix, output=output, transB=1)

    def matmul_linear(self, prefix: str, x: str, fin: int, fout: int, output: str | None = None) -> str:
        """MatMul(x, W) + b with W stored [fin, fout] (transpose of nn.Linear's weight)."""
        w = self.uniform(f"{prefix}.weight", (fin, fout), fin)
        b = self.uniform(f"{prefix}.bias", (fout,), fin)
        y = self.op("MatMul", [x, w], f"{prefix}.matmul")
        return self.op("Add", [y, b], prefix, output=output)

    def layernorm(self, prefix: str, x: str, dim: int) -> str:
        inputs = [x, self.full(f"{prefix}.weight", (dim,), 1.0), self.full(f"{prefix}.bias", (dim,), 0.0)]
        return self.op("LayerNormalization", inputs, prefix, axis=-1, epsilon=LN_EPSILON)

    # ------------------------------------------------------------------- model
    def finish(self, graph_name: str, inp: tuple[str, int, Sequence[int]],
               out: tuple[str, Sequence[int]]) -> onnx.ModelProto:
        """Wrap the graph: one input (name, elem type, shape w/o batch), one float output."""
        in_name, in_type, in_shape = inp
        out_name, out_shape = out
        graph = helper.make_graph(
            self.nodes, graph_name,
            [helper.make_tensor_value_info(in_name, in_type, [BATCH_DIM, *in_shape])],
            [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [BATCH_DIM, *out_shape])],
            initializer=self.initializers,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                 ir_version=IR_VERSION, producer_name=PRODUCER,
                                 producer_version=PRODUCER_VERSION)
