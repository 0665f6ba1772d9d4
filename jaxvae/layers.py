"""torch-exact layers in NHWC: ``Dense``, ``Conv2d`` and ``ConvTranspose2d`` with torch's padding and init.

Kernels are stored as ``(kh, kw, in, out)`` for both convolutions; the weight bridge
(``jaxvae.convert``) maps them onto torch's ``(out, in, kh, kw)`` and ``(in, out, kh, kw)``.

Each convolution has two implementations that compute the same function (the parity suite checks both):
- ``"xla"``: ``lax.conv_general_dilated`` (a transposed conv is a conv over the stride-dilated input with the
  flipped kernel and pads ``k-1-p``). Fast where cuDNN runs it; on XLA:CPU its weight gradient is slow.
- ``"matmul"``: im2col for ``Conv2d`` (shifted strided slices, one matmul); for ``ConvTranspose2d`` one of
  three matmul forms chosen by shape (see ``conv_transpose2d_matmul``). Their gradients are matmuls,
  slices and pads too, which XLA:CPU runs several times faster than a window-dilated convolution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from jaxvae.torch_init import torch_uniform

CONV_IMPLS = ("xla", "matmul")
_DIMS = ("NHWC", "HWIO", "NHWC")


def resolve_conv_impl(conv_impl: str) -> str:
    """Map ``"auto"`` to the implementation that is fastest on the default backend."""
    if conv_impl == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be 'auto' or one of {CONV_IMPLS}, got {conv_impl!r}")
    return conv_impl


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


def _col2im(x, kernel, stride: int, padding: int, precision=None):
    """``y[s*h + i - p, s*w + j - p] += x[h, w] @ kernel[i, j]``: one matmul, then k*k strided pads."""
    k, _, c_in, c_out = kernel.shape
    b, h, w, _ = x.shape
    out_h = (h - 1) * stride - 2 * padding + k
    out_w = (w - 1) * stride - 2 * padding + k
    flat_kernel = kernel.transpose(2, 0, 1, 3).reshape(c_in, k * k * c_out)  # (in, k*k*out)
    cols = jnp.dot(x, flat_kernel, precision=precision).reshape(b, h, w, k, k, c_out)  # (B, h, w, k, k, out)
    zero = jnp.zeros((), x.dtype)
    y = None
    for i in range(k):
        for j in range(k):
            low_h, low_w = i - padding, j - padding
            high_h = out_h - low_h - (stride * (h - 1) + 1)
            high_w = out_w - low_w - (stride * (w - 1) + 1)
            config = ((0, 0, 0), (low_h, high_h, stride - 1), (low_w, high_w, stride - 1), (0, 0, 0))
            tap = lax.pad(cols[:, :, :, i, j, :], zero, config)  # (B, out_h, out_w, out)
            y = tap if y is None else y + tap
    return y


def _subpixel_kernel(kernel, stride: int):
    """The ``(t, t, in, s*s*out)`` kernel of the stride-1 conv whose output phases make the transposed conv.

    Output row ``s*m + r`` of the uncropped transposed conv sums ``x[m - (t-1) + a] @ kernel[r + s*(t-1-a)]``
    over taps ``a < t = ceil(k / s)``; kernel rows past ``k`` are zero.
    """
    k, _, c_in, c_out = kernel.shape
    taps = -(-k // stride)
    padded = jnp.pad(kernel, ((0, stride * taps - k), (0, stride * taps - k), (0, 0), (0, 0)))  # (s*t, s*t, in, out)
    phased = padded[::-1, ::-1].reshape(taps, stride, taps, stride, c_in, c_out)  # [a, s-1-r, b, s-1-c]
    phased = phased[:, ::-1, :, ::-1].transpose(0, 2, 4, 1, 3, 5)  # (t, t, in, r, c, out)
    return phased.reshape(taps, taps, c_in, stride * stride * c_out)


def _subpixel(x, kernel, stride: int, padding: int, precision=None):
    """A stride-s transposed conv as one stride-1 conv with s*s*out channels, then depth-to-space and crop."""
    k, _, _, c_out = kernel.shape
    b, h, w, _ = x.shape
    taps = -(-k // stride)
    full_h, full_w = stride * (h - 1) + k, stride * (w - 1) + k
    m_h, m_w = -(-full_h // stride), -(-full_w // stride)
    xp = jnp.pad(x, ((0, 0), (taps - 1, m_h - h), (taps - 1, m_w - w), (0, 0)))
    z = conv2d_matmul(xp, _subpixel_kernel(kernel, stride), 1, 0, precision)  # (B, m_h, m_w, s*s*out)
    z = z.reshape(b, m_h, m_w, stride, stride, c_out).transpose(0, 1, 3, 2, 4, 5)  # (B, m_h, s, m_w, s, out)
    z = z.reshape(b, m_h * stride, m_w * stride, c_out)  # (B, s*m_h, s*m_w, out)
    return z[:, padding : full_h - padding, padding : full_w - padding, :]


def conv_transpose2d_matmul(x, kernel, stride: int, padding: int, precision=None):
    """torch ``conv_transpose2d`` through matmuls, in the form XLA:CPU differentiates fastest for its shape.

    - stride 1, several output channels: a conv with the flipped kernel, as im2col;
    - stride 1, few output channels: col2im (im2col's matrix-vector product is slow on XLA:CPU);
    - stride > 1: sub-pixel (one stride-1 im2col conv, then depth-to-space).
    """
    k, _, _, c_out = kernel.shape
    if stride > 1:
        return _subpixel(x, kernel, stride, padding, precision)
    if c_out >= 8:
        return conv2d_matmul(x, kernel[::-1, ::-1], 1, k - 1 - padding, precision)
    return _col2im(x, kernel, stride, padding, precision)


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
