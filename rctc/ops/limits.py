"""What rctc refuses of any model, whatever its ops: one phrase per refusal, as its one-line error says it.

Needs: nothing. Leaves: the phrases the frontend and the data checks raise with (imported from
here, so the text ``rctc ops`` prints is the text a user sees) and ``GENERAL_LIMITS`` (phrase ->
what it means). Each op's own refusals are its definition's ``limits`` (rctc/ops/schema.py).
"""

from __future__ import annotations

UNSUPPORTED_TYPE = "has an unsupported element type"
NOT_A_TENSOR = "is not a tensor"
OPSET18_TYPE = "has unsupported type: tensor("
ZERO_BATCH = "has a zero-size first dimension"
NON_FINITE_DATA = "contains NaN or Inf"

GENERAL_LIMITS: dict[str, str] = {
    UNSUPPORTED_TYPE: "tensors of bfloat16, 2- / 4-bit integers, float8 / float4 or strings",
    NOT_A_TENSOR: "sequence, map and optional values",
    OPSET18_TYPE: "an element type the op does not take at opset 18, the opset rctc reads models at "
                  "(opset 20's bool ReduceMax, opset 22's float16 Celu)",
    ZERO_BATCH: "a zero-size first (batch) dimension",
    NON_FINITE_DATA: "input data with NaN or Inf (train / eval / predict)",
}

__all__ = ["GENERAL_LIMITS", "NON_FINITE_DATA", "NOT_A_TENSOR", "OPSET18_TYPE", "UNSUPPORTED_TYPE", "ZERO_BATCH"]
