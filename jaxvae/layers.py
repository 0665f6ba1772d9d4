"""torch-exact layers in NHWC: ``Dense``, ``Conv2d`` and ``ConvTranspose2d`` with torch's padding and init.

Kernels are ``(kh, kw, in, out)`` for both convolutions (``jaxvae.convert`` maps them onto torch's ``(out, in, kh,
kw)`` and ``(in, out, kh, kw)``). Initialisation is torch's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights
and biases, with torch's fan_in = ``weight.size(1) * k * k``: ``in * k * k`` for Conv2d, ``out * k * k`` for
ConvTranspose2d (weight ``(in, out, k, k)``), ``in`` for Linear.

Each convolution has three implementations of the same function (the parity suite checks each):
- ``"xla"``: ``lax.conv_general_dilated`` (a transposed conv is a conv over the stride-dilated input with the
  flipped kernel and pads ``k-1-p``, i.e. ``lhs_dilation``); on XLA:CPU its weight gradient is slow.
- ``"matmul"``: im2col for ``Conv2d``; for ``ConvTranspose2d`` a flipped-kernel im2col or col2im by output phase,
  by shape. Their gradients are matmuls, slices and pads, which XLA:CPU runs several times faster.
- ``"pad"``: a transposed conv as an explicit pad (``stride - 1`` zeros between pixels, ``k-1-p`` at the edges)
  and a stride-1 convolution, so that no gradient holds a dilated convolution; ``Conv2d`` is ``"xla"``'s.

**Compute dtype** ``"bfloat16"``: each layer's input and kernel cast to bfloat16, its convolution or matmul
accumulated and returned in float32, and its gradient computed on the bfloat16 cotangent (``bfloat16_operands``);
biases, activations, the loss, parameters and gradients stay float32. ``"float32"`` (the default) computes as above.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

CONV_IMPLS = ("xla", "matmul", "pad")
COMPUTE_DTYPES = ("float32", "bfloat16")
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


def conv2d_xla(x, kernel, stride: int, padding: int, precision=None, out_dtype=None, dilation: int = 1):
    """torch ``conv2d`` through XLA's convolution, over the input with ``dilation - 1`` zeros between its pixels."""
    pads, strides, dilations = [(padding, padding)] * 2, (stride, stride), (dilation, dilation)
    return lax.conv_general_dilated(
        x, kernel, strides, pads, dilations, None, _DIMS, precision=precision, preferred_element_type=out_dtype
    )


def conv2d_matmul(x, kernel, stride: int, padding: int, precision=None, out_dtype=None):
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
    return jnp.dot(patches, flat_kernel, precision=precision, preferred_element_type=out_dtype)  # (B, oh, ow, out)


def conv_transpose2d_xla(x, kernel, stride: int, padding: int, precision=None, out_dtype=None):
    """torch ``conv_transpose2d``: a conv over the stride-dilated input with the flipped kernel, padded ``k-1-p``."""
    edge = kernel.shape[0] - 1 - padding
    return conv2d_xla(x, kernel[::-1, ::-1], 1, edge, precision, out_dtype, dilation=stride)


def conv_transpose2d_pad(x, kernel, stride: int, padding: int, precision=None, out_dtype=None):
    """torch ``conv_transpose2d`` as ``lax.pad`` (interior ``stride - 1``, edges ``k-1-p``), then a stride-1 conv
    with the flipped kernel: the ``"xla"`` form with its dilation written out as data."""
    k = kernel.shape[0]
    edge = k - 1 - padding
    no_pad = (0, 0, 0)
    spread = lax.pad(x, jnp.zeros((), x.dtype), (no_pad, (edge, edge, stride - 1), (edge, edge, stride - 1), no_pad))
    # (B, s*(h-1) + 1 + 2*edge, s*(w-1) + 1 + 2*edge, in)
    return conv2d_xla(spread, kernel[::-1, ::-1], 1, 0, precision, out_dtype)  # (B, s*(h-1) + k - 2p, ..., out)


def _phase_col2im(x, kernel, stride: int, padding: int, precision=None, out_dtype=None):
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
    cols = jnp.dot(x, flat_kernel, precision=precision, preferred_element_type=out_dtype)  # (B, h, w, k*k*out)
    taps = jnp.split(cols, k * k, axis=-1)  # k*k of (B, h, w, out): tap i*k + j; its gradient is one concatenate
    phases = [[None] * stride for _ in range(stride)]
    for i in range(k):
        for j in range(k):
            t, u = i // stride, j // stride
            pads = ((0, 0), (t, grid_h - h - t), (u, grid_w - w - u), (0, 0))
            tap = jnp.pad(taps[i * k + j], pads)  # (B, grid_h, grid_w, out)
            r, c = i % stride, j % stride
            phases[r][c] = tap if phases[r][c] is None else phases[r][c] + tap
    zeros = jnp.zeros((b, grid_h, grid_w, c_out), cols.dtype)  # a phase no tap reaches (stride > k)
    grid = jnp.stack([jnp.stack([p if p is not None else zeros for p in row], axis=3) for row in phases], axis=2)
    y = grid.reshape(b, grid_h * stride, grid_w * stride, c_out)  # (B, grid_h, s, grid_w, s, out) -> interleaved
    return y[:, padding : full_h - padding, padding : full_w - padding, :]


def conv_transpose2d_matmul(x, kernel, stride: int, padding: int, precision=None, out_dtype=None):
    """torch ``conv_transpose2d`` through matmuls, in the form XLA:CPU runs fastest for its shape.

    - stride 1, several output channels: a conv with the flipped kernel, as im2col;
    - otherwise: col2im by output phase (``_phase_col2im``), which does exactly the transposed conv's FLOPs.
    """
    k, _, _, c_out = kernel.shape
    if stride == 1 and c_out >= 8:
        return conv2d_matmul(x, kernel[::-1, ::-1], 1, k - 1 - padding, precision, out_dtype)
    return _phase_col2im(x, kernel, stride, padding, precision, out_dtype)


_CONV = {"xla": conv2d_xla, "matmul": conv2d_matmul, "pad": conv2d_xla}
_CONV_TRANSPOSE = {"xla": conv_transpose2d_xla, "matmul": conv_transpose2d_matmul, "pad": conv_transpose2d_pad}


def dense(x, kernel, precision=None, out_dtype=None):
    """torch ``linear`` without its bias: ``x @ kernel``."""
    return jnp.dot(x, kernel, precision=precision, preferred_element_type=out_dtype)


def bfloat16_operands(op, x_dtype=jnp.float32, kernel_dtype=jnp.float32):
    """``op(x, kernel, out_dtype)`` (linear in each of ``x`` and ``kernel``) as the bfloat16 compute dtype runs it:
    both operands cast to bfloat16, float32 accumulation and result. Its gradient casts the float32 cotangent to
    bfloat16 and differentiates ``op`` at bfloat16 (its convolutions and matmuls accumulate in float32 inside and
    round their results to bfloat16), then returns the operands' gradients in ``x_dtype`` and ``kernel_dtype``."""

    def forward(x, kernel):
        x16, kernel16 = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
        return op(x16, kernel16, jnp.float32), (x16, kernel16)

    @jax.custom_vjp
    def apply(x, kernel):
        return forward(x, kernel)[0]

    def backward(saved, cotangent):
        x16, kernel16 = saved
        _, pullback = jax.vjp(lambda a, b: op(a, b, None), x16, kernel16)
        dx, dkernel = pullback(cotangent.astype(jnp.bfloat16))
        return dx.astype(x_dtype), dkernel.astype(kernel_dtype)

    apply.defvjp(forward, backward)
    return apply


def in_compute_dtype(op, x, kernel, compute_dtype: str):
    """``op(x, kernel)`` in ``compute_dtype``: as written for ``"float32"``, through ``bfloat16_operands`` for
    ``"bfloat16"``. ``op`` takes an optional third argument, the result's dtype (``preferred_element_type``)."""
    if compute_dtype == "float32":
        return op(x, kernel)
    if compute_dtype == "bfloat16":
        return bfloat16_operands(op, x.dtype, kernel.dtype)(x, kernel)
    raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")


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
    precision: lax.Precision | None
    compute_dtype: str

    def multiply(self, x, kernel, *out_dtype):
        return dense(x, kernel, self.precision, *out_dtype)

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        kernel = self.param("kernel", torch_uniform(fan_in), (fan_in, self.features))
        bias = self.param("bias", torch_uniform(fan_in), (self.features,))
        return in_compute_dtype(self.multiply, x, kernel, self.compute_dtype) + bias


class _TorchConv(nn.Module):
    """A torch-style 2-D convolution in NHWC: square kernel ``(k, k, in, out)``, integer padding, bias."""

    features: int
    kernel_size: int
    stride: int
    padding: int
    impl: str
    precision: lax.Precision | None
    compute_dtype: str

    def fan_in(self, c_in: int) -> int:
        raise NotImplementedError

    def convolve(self, x, kernel, *out_dtype):
        raise NotImplementedError

    @nn.compact
    def __call__(self, x):
        k, c_in = self.kernel_size, x.shape[-1]
        init = torch_uniform(self.fan_in(c_in))
        kernel = self.param("kernel", init, (k, k, c_in, self.features))
        bias = self.param("bias", init, (self.features,))
        return in_compute_dtype(self.convolve, x, kernel, self.compute_dtype) + bias


class Conv2d(_TorchConv):
    """torch ``nn.Conv2d`` (square kernel, symmetric integer padding) in NHWC."""

    def fan_in(self, c_in: int) -> int:
        return c_in * self.kernel_size**2

    def convolve(self, x, kernel, *out_dtype):
        return _CONV[self.impl](x, kernel, self.stride, self.padding, self.precision, *out_dtype)


class ConvTranspose2d(_TorchConv):
    """torch ``nn.ConvTranspose2d`` (square kernel, integer padding, no output_padding) in NHWC."""

    def fan_in(self, c_in: int) -> int:
        return self.features * self.kernel_size**2  # torch: weight (in, out, k, k).size(1) * k * k

    def convolve(self, x, kernel, *out_dtype):
        return _CONV_TRANSPOSE[self.impl](x, kernel, self.stride, self.padding, self.precision, *out_dtype)
