"""The matmul forms of the convolutions do exactly the model's multiply-adds: no padded taps, no extra phases.

The count comes from the traced gradient (every ``dot_general`` of its jaxpr) and is checked against a hand count of
each layer from the seed's shapes. A form that computes more than it needs (the sub-pixel transposed conv that
``_phase_col2im`` replaced did 16/9 of the taps) fails it.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import VAE
from jaxvae.train_step import make_loss_fn

# Forward multiply-adds per image, by hand: a conv does (output positions x 9 x in x out), a transposed conv
# (input positions x 9 x in x out), a dense layer (in x out).
LAYER_MACS = {
    "encoder.0": 28 * 28 * 9 * 1 * 32,
    "encoder.2": 14 * 14 * 9 * 32 * 64,
    "encoder.4": 7 * 7 * 9 * 64 * 64,
    "encoder.6": 7 * 7 * 9 * 64 * 64,
    "z_mean": 3136 * 2,
    "z_log_var": 3136 * 2,
    "decoder.0": 2 * 3136,
    "decoder.2": 7 * 7 * 9 * 64 * 64,
    "decoder.4": 7 * 7 * 9 * 64 * 64,
    "decoder.6": 13 * 13 * 9 * 64 * 32,
    "decoder.8": 27 * 27 * 9 * 32 * 1,
}
FORWARD_FLOPS = 2 * sum(LAYER_MACS.values())  # 28,815,168: "about 28.8 MFLOP" forward (docs/benchmarks.md)
BATCH = 4


def dot_flops(jaxpr) -> float:
    """2 x the multiply-adds of every ``dot_general`` in ``jaxpr`` and the jaxprs inside it (a scan's body once)."""
    flops = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            lhs, rhs = (v.aval.shape for v in eqn.invars)
            (contract, _), (batch, _) = eqn.params["dimension_numbers"]
            flops += 2.0 * np.prod(lhs) * np.prod(rhs) / np.prod([lhs[i] for i in (*contract, *batch)])
        for value in eqn.params.values():  # a call's, a scan's or a custom rule's body
            for sub in value if isinstance(value, (tuple, list)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                flops += dot_flops(inner) if hasattr(inner, "eqns") else 0.0
    return flops


def test_the_matmuls_are_the_models_multiply_adds():
    """Forward: the hand count. Training: forward + weight gradients (each the forward's size) + input gradients
    (likewise, except encoder.0's: its input is the data, which needs none), 85,993,920 FLOP: the "about 86 MFLOP
    per image" of docs/benchmarks.md."""
    model = VAE(2, conv_impl="matmul")
    x, eps = jnp.zeros((BATCH, 28, 28, 1), jnp.float32), jnp.zeros((BATCH, 2), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))["params"]
    per_image = lambda fn, *args: dot_flops(jax.make_jaxpr(fn)(*args).jaxpr) / BATCH  # noqa: E731
    forward = lambda p, x, key: model.apply({"params": p}, x, key)  # noqa: E731
    assert per_image(forward, params, x, jax.random.PRNGKey(2)) == FORWARD_FLOPS
    grad = jax.grad(make_loss_fn(model, 1.0), has_aux=True)
    assert per_image(grad, params, x, eps) == 3 * FORWARD_FLOPS - 2 * LAYER_MACS["encoder.0"] == 85_993_920
