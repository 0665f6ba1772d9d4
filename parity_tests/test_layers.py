"""Each convolution implementation against torch, forward and both gradients, for every geometry of the model.

In float64 on both sides: the two then differ by the order of float64 sums, ~1e-15 of the largest value, so
max |jax - torch| <= 1e-10 * max(1, max |torch|) holds on any machine; a shifted pad, a wrong stride or a kernel
not flipped is off by tens of percent.
"""

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jaxvae import layers
from parity_tests.conftest import IMPLS

HIGHEST = jax.lax.Precision.HIGHEST
# (in, out, spatial, stride, padding): the seed's layers, then a few other shapes for the general code paths.
CONVS = [(1, 32, 28, 1, 1), (32, 64, 28, 2, 1), (64, 64, 14, 2, 1), (64, 64, 7, 1, 1), (3, 5, 9, 3, 2)]
CONV_TRANSPOSES = [
    (64, 64, 7, 1, 1),
    (64, 64, 7, 2, 1),
    (64, 32, 13, 2, 0),
    (32, 1, 27, 1, 0),
    (3, 5, 6, 3, 1),
    (4, 2, 5, 2, 2),
    (2, 3, 4, 4, 1),  # stride 4 > 3 taps: a phase that no tap reaches
]


def close(got, want, tol=1e-10):
    want = want.detach().numpy()
    got = np.asarray(got)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= tol * max(1.0, np.max(np.abs(want)))


def run_both(jax_fn, torch_fn, x_nhwc, kernel_jax, kernel_torch):
    """Forward and the vjp with a random cotangent, through both frameworks, in float64."""
    xt = torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy()).requires_grad_()
    wt = torch.from_numpy(kernel_torch.copy()).requires_grad_()
    yt = torch_fn(xt, wt)
    dy = np.random.default_rng(1).standard_normal(yt.shape)
    yt.backward(torch.from_numpy(dy))
    with jax.enable_x64(True):
        y, vjp = jax.vjp(jax.jit(jax_fn), x_nhwc, kernel_jax)
        dx, dk = vjp(dy.transpose(0, 2, 3, 1))
        return (
            (np.asarray(y), yt.permute(0, 2, 3, 1)),
            (np.asarray(dx), xt.grad.permute(0, 2, 3, 1)),
            (np.asarray(dk), wt.grad),
        )


# kind -> (jaxvae's implementations, torch's function, torch's kernel axes in jax's (kh, kw, in, out) order)
KINDS = {
    "conv": (layers._CONV, F.conv2d, (2, 3, 1, 0)),  # torch (out, in, kh, kw)
    "transpose": (layers._CONV_TRANSPOSE, F.conv_transpose2d, (2, 3, 0, 1)),  # torch (in, out, kh, kw)
}
DISTINCT_CONVS = sorted({layers._CONV[i].__name__: i for i in IMPLS}.values())  # "pad" is "xla" for a convolution
CASES = [("conv", impl, *g) for impl in DISTINCT_CONVS for g in CONVS]
CASES += [("transpose", impl, *g) for impl in IMPLS for g in CONV_TRANSPOSES]


@pytest.mark.parametrize("kind, impl, c_in, c_out, size, stride, padding", CASES)
def test_convolution(kind, impl, c_in, c_out, size, stride, padding):
    """The transposed geometries cover both matmul forms: flipped im2col (stride 1, >= 8 outputs) and phase col2im
    (the rest, strides 2 to 4)."""
    table, torch_fn, axes = KINDS[kind]
    rng = np.random.default_rng(0)
    x = rng.random((2, size, size, c_in))
    w = rng.standard_normal((c_out, c_in, 3, 3) if kind == "conv" else (c_in, c_out, 3, 3)) * 0.2
    (y, yt), (dx, dxt), (dk, dwt) = run_both(
        lambda x, k: table[impl](x, k, stride, padding, HIGHEST),
        lambda x, w: torch_fn(x, w, stride=stride, padding=padding),
        x,
        w.transpose(axes),
        w,
    )
    close(y, yt)
    close(dx, dxt)
    close(dk, dwt.permute(axes))


def test_leaky_relu_matches_torch_at_the_kink():
    """Values and gradients equal torch's, including at exactly 0 (slope 0.01, not Flax's 1)."""
    values = np.array([-2.0, -1e-9, 0.0, -0.0, 1e-9, 3.0], np.float32)
    xt = torch.from_numpy(values.copy()).requires_grad_()
    torch.nn.LeakyReLU(0.01)(xt).sum().backward()
    np.testing.assert_array_equal(jax.grad(lambda x: layers.leaky_relu(x, 0.01).sum())(values), xt.grad.numpy())
    np.testing.assert_array_equal(
        layers.leaky_relu(values, 0.01), torch.nn.functional.leaky_relu(torch.from_numpy(values), 0.01).numpy()
    )
