"""The matmuls of a traced function: every ``dot_general`` in a jaxpr (and the jaxprs it calls), and FLOPs.

Used by ``scripts/matmul_floor.py`` to replay a training step's matmuls alone, and by the tests to check that
the matmul forms of the convolutions do exactly the model's multiply-adds.
"""

from __future__ import annotations

import numpy as np


def _sub_jaxprs(value):
    """The jaxprs inside an equation parameter (a call's body, a scan's, a custom rule's...)."""
    if hasattr(value, "eqns"):
        yield value
    elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def dot_generals(jaxpr) -> list[dict]:
    """Every ``dot_general`` in ``jaxpr`` and its sub-jaxprs: ``{"lhs", "rhs"}`` shapes and ``"dims"``
    (the dimension numbers), in program order. A scan's body is listed once, not once per iteration."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            lhs, rhs = (v.aval for v in eqn.invars)
            found.append({"lhs": tuple(lhs.shape), "rhs": tuple(rhs.shape), "dims": eqn.params["dimension_numbers"]})
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                found.extend(dot_generals(sub))
    return found


def dot_flops(dot: dict) -> float:
    """2 x the multiply-adds of one dot_general: each output element sums over the contracted size."""
    (contract, _), (batch, _) = dot["dims"]
    shared = np.prod([dot["lhs"][i] for i in (*contract, *batch)])
    return 2.0 * np.prod(dot["lhs"]) * np.prod(dot["rhs"]) / shared
