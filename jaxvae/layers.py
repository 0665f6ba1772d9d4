"""torch-exact layers in NHWC: ``Dense``, ``Conv2d`` and ``ConvTranspose2d`` with torch's padding and init.

Kernels are stored as ``(kh, kw, in, out)`` for both convolutions; the weight bridge
(``jaxvae.convert``) maps them onto torch's ``(out, in, kh, kw)`` and ``(in, out, kh, kw)``.

Initialisation is torch's default: torch draws weights with ``kaiming_uniform_(a=sqrt(5))`` and biases from
U(-1/sqrt(fan_in), ...); both are U(-1/sqrt(fan_in), 1/sqrt(fan_in)), with torch's fan_in =
``weight.size(1) * k * k``: ``in * k * k`` for Conv2d, ``in`` for Linear, ``out * k * k`` for ConvTranspose2d
(weight ``(in, out, k, k)``).

Each convolution has two implementations that compute the same function (the parity suite checks both):
- ``"xla"``: ``lax.conv_general_dilated`` (a transposed conv is a conv over the stride-dilated input with the
  flipped kernel and pads ``k-1-p``). Fast where cuDNN runs it; on XLA:CPU its weight gradient is slow.
- ``"matmul"``: im2col for ``Conv2d`` (shifted views, one matmul); for ``ConvTranspose2d`` a flipped-kernel
  im2col or col2im by output phase, chosen by shape (see ``conv_transpose2d_matmul``). Their gradients are
  matmuls, slices and pads too, which XLA:CPU runs several times faster than a window-dilated convolution.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

CONV_IMPLS = ("xla", "matmul")
_DIMS = ("NHWC", "HWIO", "NHWC")


def torch_bound(fan_in: int) -> float:
    """Half-width of torch's default uniform initialisation for a layer of this fan_in."""
    return 1.0 / math.sqrt(fan_in)


def torch_uniform(fan_in: int):
    """A Flax initialiser drawing U(-1/sqrt(fan_in), 1/sqrt(fan_in)) of any shape."""
    bound = torch_bound(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

    return init


def conv2d_xla(x, kernel, stride: int, padding: int, precision=None):
    """torch ``conv2d`` through XLA's convolution."""
    pads = [(padding, padding)] * 2
    return lax.conv_general_dilated(x, kernel, (stride, stride), pads, dimension_numbers=_DIMS, precision=precision)


def conv2d_matmul(x, kernel, stride: int, padding: int, precision=None):
    """torch ``conv2d`` as im2col: the k*k shifted, strided views of x side by side, times the kernel."""
    k = kernel.shape[0]
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out_h = (xp.shape[1] - k) // stride + 1
    out_w = (xp.shape[2] - k) // stride + 1
    taps = [
        xp[:, i : i + stride * (out_h - 1) + 1 : stride, j : j + stride * (out_w - 1) + 1 : stride, :]
        for i in range(k)
        for j in range(k)
    ]  # k*k of (B, out_h, out_w, in)
    patches = jnp.concatenate(taps, axis=-1)  # (B, out_h, out_w, k*k*in)
    flat_kernel = kernel.reshape(-1, kernel.shape[-1])  # (k*k*in, out)
    return jnp.dot(patches, flat_kernel, precision=precision)  # (B, out_h, out_w, out)


def conv_transpose2d_xla(x, kernel, stride: int, padding: int, precision=None):
    """torch ``conv_transpose2d``: a conv over the stride-dilated input with the flipped kernel."""
    k = kernel.shape[0]
    pads = [(k - 1 - padding, k - 1 - padding)] * 2
    flipped = kernel[::-1, ::-1]  # (k, k, in, out)
    return lax.conv_general_dilated(
        x, flipped, (1, 1), pads, lhs_dilation=(stride, stride), dimension_numbers=_DIMS, precision=precision
    )


def _phase_col2im(x, kernel, stride: int, padding: int, precision=None):
    """Transposed conv as col2im by output phase: one exact-FLOP matmul, then unit-stride shifts and adds.

    ``cols = x @ kernel`` gives every tap ``x[h, w] @ kernel[i, j]``; it lands on uncropped output
    ``(s*h + i, s*w + j)``, i.e. phase ``(i % s, j % s)`` at ``(h + i // s, w + j // s)``. Each phase sums its
    taps shifted by zero pads; the s*s phases interleave by a reshape, then torch's padding crops.
    """
    k, _, c_in, c_out = kernel.shape
    b, h, w, _ = x.shape
    full_h, full_w = stride * (h - 1) + k, stride * (w - 1) + k
    grid_h, grid_w = -(-full_h // stride), -(-full_w // stride)  # each phase's size; grid_h >= h + (k - 1) // s
    flat_kernel = kernel.transpose(2, 0, 1, 3).reshape(c_in, k * k * c_out)  # (in, k*k*out)
    cols = jnp.dot(x, flat_kernel, precision=precision)  # (B, h, w, k*k*out)
    taps = jnp.split(cols, k * k, axis=-1)  # k*k of (B, h, w, out): tap i*k + j; its gradient is one concatenate
    phases = [[None] * stride for _ in range(stride)]
    for i in range(k):
        for j in range(k):
            t, u = i // stride, j // stride
            pads = ((0, 0), (t, grid_h - h - t), (u, grid_w - w - u), (0, 0))
            tap = jnp.pad(taps[i * k + j], pads)  # (B, grid_h, grid_w, out)
            r, c = i % stride, j % stride
            phases[r][c] = tap if phases[r][c] is None else phases[r][c] + tap
    zeros = jnp.zeros((b, grid_h, grid_w, c_out), x.dtype)  # a phase no tap reaches (stride > k)
    grid = jnp.stack([jnp.stack([p if p is not None else zeros for p in row], axis=3) for row in phases], axis=2)
    y = grid.reshape(b, grid_h * stride, grid_w * stride, c_out)  # (B, grid_h, s, grid_w, s, out) -> interleaved
    return y[:, padding : full_h - padding, padding : full_w - padding, :]


def conv_transpose2d_matmul(x, kernel, stride: int, padding: int, precision=None):
    """torch ``conv_transpose2d`` through matmuls, in the form XLA:CPU runs fastest for its shape.

    - stride 1, several output channels: a conv with the flipped kernel, as im2col;
    - otherwise: col2im by output phase (``_phase_col2im``), which does exactly the transposed conv's FLOPs.
    """
    k, _, _, c_out = kernel.shape
    if stride == 1 and c_out >= 8:
        return conv2d_matmul(x, kernel[::-1, ::-1], 1, k - 1 - padding, precision)
    return _phase_col2im(x, kernel, stride, padding, precision)


_CONV = {"xla": conv2d_xla, "matmul": conv2d_matmul}
_CONV_TRANSPOSE = {"xla": conv_transpose2d_xla, "matmul": conv_transpose2d_matmul}


def leaky_relu(x, negative_slope: float):
    """torch's ``LeakyReLU``: ``x`` where ``x > 0``, else ``negative_slope * x``.

    The same values as ``flax.linen.leaky_relu``, but the derivative at exactly 0 is ``negative_slope`` as in
    torch's backward (Flax's is 1). An implementation whose rounding lands a pre-activation on 0.0 (the matmul
    forms do, where XLA's convolution gives -7e-9) then still gets torch's gradient.
    """
    return jnp.where(x > 0, x, negative_slope * x)


class Dense(nn.Module):
    """torch ``nn.Linear``: kernel ``(in, out)``, torch's default initialisation."""

    features: int
    precision: lax.Precision | None = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        kernel = self.param("kernel", torch_uniform(fan_in), (fan_in, self.features))
        bias = self.param("bias", torch_uniform(fan_in), (self.features,))
        return jnp.dot(x, kernel, precision=self.precision) + bias


class _TorchConv(nn.Module):
    """A torch-style 2-D convolution in NHWC: square kernel ``(k, k, in, out)``, integer padding, bias."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 0
    impl: str = "xla"
    precision: lax.Precision | None = lax.Precision.HIGHEST

    def fan_in(self, c_in: int) -> int:
        raise NotImplementedError

    def convolve(self, x, kernel):
        raise NotImplementedError

    @nn.compact
    def __call__(self, x):
        k, c_in = self.kernel_size, x.shape[-1]
        init = torch_uniform(self.fan_in(c_in))
        kernel = self.param("kernel", init, (k, k, c_in, self.features))
        bias = self.param("bias", init, (self.features,))
        return self.convolve(x, kernel) + bias


class Conv2d(_TorchConv):
    """torch ``nn.Conv2d`` (square kernel, symmetric integer padding) in NHWC."""

    def fan_in(self, c_in: int) -> int:
        return c_in * self.kernel_size**2

    def convolve(self, x, kernel):
        return _CONV[self.impl](x, kernel, self.stride, self.padding, self.precision)


class ConvTranspose2d(_TorchConv):
    """torch ``nn.ConvTranspose2d`` (square kernel, integer padding, no output_padding) in NHWC."""

    def fan_in(self, c_in: int) -> int:
        return self.features * self.kernel_size**2  # torch: weight (in, out, k, k).size(1) * k * k

    def convolve(self, x, kernel):
        return _CONV_TRANSPOSE[self.impl](x, kernel, self.stride, self.padding, self.precision)
