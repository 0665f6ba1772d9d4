"""Deliberately wrong ports, applied at test time with pytest's ``monkeypatch``: the harness must fail each one.

Each mutant is what a careless port would contain. Those on the ``torch_ref`` side change the reference as a
reviewer would (a copy of the notebook with the mistake); those on the ``jaxvae`` side change the port itself.
Nothing here is a copy of the code: every mutant patches one function or constant of the running code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import torch
import torch.nn.functional as F
from jax import lax

import jaxvae.architecture
import jaxvae.layers
import jaxvae.likelihoods
import jaxvae.model
import jaxvae.parity.jax_side
import jaxvae.train_step
import torch_ref.model
import torch_ref.train

LATENT, BATCH, SEED = 2, 8, 4  # the case every mutant is applied to (it passes unmutated)

# ---- torch_ref side ----------------------------------------------------------------------------------------


def torch_slope_off_by_one_percent(mp):
    mp.setattr(torch.nn.LeakyReLU, "forward", lambda self, x: F.leaky_relu(x, self.negative_slope * 1.01))


def torch_trim_wrong_corner(mp):
    mp.setattr(torch_ref.model.Trim, "forward", lambda self, x: x[:, :, 1:, 1:])


def torch_exp_log_var(mp):
    def reparameterize(self, z_mu, z_log_var, eps=None):
        return z_mu + eps * torch.exp(z_log_var)

    mp.setattr(torch_ref.model.VAE, "reparameterize", reparameterize)


def torch_flatten_nhwc(mp):
    mp.setattr(torch.nn.Flatten, "forward", lambda self, x: x.permute(0, 2, 3, 1).flatten(1))


def torch_transpose_padding(mp):
    """decoder.4 (stride 2, padding 1) padded (0, 2) instead of (1, 1): the same 13x13 size, shifted a pixel."""
    original = torch.nn.ConvTranspose2d.forward

    def forward(self, x, output_size=None):
        if self.stride == (2, 2) and self.padding == (1, 1):
            y = F.conv_transpose2d(x, self.weight, self.bias, stride=2, padding=0)  # (B, C, 15, 15)
            return y[:, :, 2:, 2:]  # (B, C, 13, 13)
        return original(self, x)

    mp.setattr(torch.nn.ConvTranspose2d, "forward", forward)


def torch_kl_without_half(mp):
    def vae_loss(x, decoded, z_mean, z_log_var, reconstruction_weight=1.0, likelihood="gaussian"):
        kl = -torch.sum(1 + z_log_var - z_mean**2 - torch.exp(z_log_var), dim=1).mean()
        reconstruction = F.mse_loss(decoded, x, reduction="none").view(x.size(0), -1).sum(dim=1).mean()
        return reconstruction_weight * reconstruction + kl, reconstruction, kl

    mp.setattr(torch_ref.train, "vae_loss", vae_loss)


def torch_missing_bias(mp):
    """decoder.8's one bias dropped (the only ConvTranspose2d with one output channel)."""
    original = torch.nn.ConvTranspose2d.forward

    def forward(self, x, output_size=None):
        if self.out_channels == 1:
            return F.conv_transpose2d(x, self.weight, None, self.stride, self.padding)
        return original(self, x)

    mp.setattr(torch.nn.ConvTranspose2d, "forward", forward)


def torch_weight_off_by_1e6(mp):
    """encoder.2's weights 1e-6 larger, each: what float64 must catch and float32 cannot."""
    original = torch.nn.Conv2d.forward

    def forward(self, x):
        if self.in_channels == 32:
            return self._conv_forward(x, self.weight + 1e-6, self.bias)
        return original(self, x)

    mp.setattr(torch.nn.Conv2d, "forward", forward)


# ---- jaxvae side --------------------------------------------------------------------------------------------


def jax_slope_off_by_one_percent(mp):
    mp.setattr(jaxvae.architecture, "LEAKY_SLOPE", 0.0101)


def jax_trim_wrong_corner(mp):
    mp.setattr(jaxvae.model, "trim_like_torch", lambda h: h[:, 1:, 1:, :])


def jax_exp_log_var(mp):
    wrong = lambda eps, z_mean, z_log_var: z_mean + eps * jnp.exp(z_log_var)  # noqa: E731
    for module in (jaxvae.model, jaxvae.train_step, jaxvae.parity.jax_side):
        mp.setattr(module, "shift_and_scale", wrong)


def jax_flatten_nhwc(mp):
    mp.setattr(jaxvae.model, "flatten_like_torch", lambda h: h.reshape(h.shape[0], -1))


def jax_transpose_padding(mp):
    """Every transposed conv padded (k-p, k-2-p) instead of (k-1-p, k-1-p): same sizes, shifted a pixel."""

    def conv_transpose(x, kernel, stride, padding, precision=None, out_dtype=None):
        k = kernel.shape[0]
        pads = [(k - padding, k - 2 - padding)] * 2
        return lax.conv_general_dilated(
            x,
            kernel[::-1, ::-1],
            (1, 1),
            pads,
            lhs_dilation=(stride, stride),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=precision,
            preferred_element_type=out_dtype,
        )

    for impl in jaxvae.layers.CONV_IMPLS:
        mp.setitem(jaxvae.layers._CONV_TRANSPOSE, impl, conv_transpose)


def jax_kl_without_half(mp):
    mp.setattr(jaxvae.likelihoods, "kl_divergence", lambda m, lv: -jnp.sum(1.0 + lv - m**2 - jnp.exp(lv), axis=-1))


def jax_pad_form_shifted(mp):
    """The pad form's edges one zero more before and one fewer after: the same sizes, shifted a pixel."""

    def conv_transpose(x, kernel, stride, padding, precision=None, out_dtype=None):
        edge, gap = kernel.shape[0] - 1 - padding, stride - 1
        pads = ((0, 0, 0), (edge + 1, edge - 1, gap), (edge + 1, edge - 1, gap), (0, 0, 0))
        spread = lax.pad(x, jnp.zeros((), x.dtype), pads)
        return jaxvae.layers.conv2d_xla(spread, kernel[::-1, ::-1], 1, 0, precision, out_dtype)

    mp.setitem(jaxvae.layers._CONV_TRANSPOSE, "pad", conv_transpose)


# ---- jaxvae's bfloat16 compute dtype: what a careless mixed-precision port does --------------------------------


def _around_operands(mp, wrap) -> None:
    """``jaxvae.layers.bfloat16_operands(op, ...)`` replaced by ``wrap(its function of (x, kernel))``."""
    original = jaxvae.layers.bfloat16_operands
    mp.setattr(jaxvae.layers, "bfloat16_operands", lambda op, *dtypes: wrap(original(op, *dtypes)))


def bfloat16_accumulation(mp):
    """Results in bfloat16 (as ``preferred_element_type`` left at the operands' dtype gives): every convolution's
    and matmul's result rounded to bfloat16 before the float32 bias."""
    _around_operands(mp, lambda apply: lambda x, k: apply(x, k).astype(jnp.bfloat16).astype(jnp.float32))


def bfloat16_kernel_only(mp):
    """The kernel cast to bfloat16 and the input left float32."""

    def in_compute_dtype(op, x, kernel, compute_dtype):
        return op(x, kernel if compute_dtype == "float32" else kernel.astype(jnp.bfloat16).astype(x.dtype))

    mp.setattr(jaxvae.layers, "in_compute_dtype", in_compute_dtype)


def bfloat16_truncated(mp):
    """Operands cut to bfloat16 by dropping their low 16 bits (truncation toward zero), not rounded to nearest."""

    def truncate(a):
        bits = lax.bitcast_convert_type(a.astype(jnp.float32), jnp.uint32)
        return lax.bitcast_convert_type(bits & jnp.uint32(0xFFFF0000), jnp.float32)

    _around_operands(mp, lambda apply: lambda x, k: apply(truncate(x), truncate(k)))


def bfloat16_input_gradient_dropped(mp):
    """The cast input held out of the gradient (as a port that thinks only weights need one would): every layer
    before the last gets a zero gradient."""
    _around_operands(mp, lambda apply: lambda x, k: apply(lax.stop_gradient(x), k))


# ---- the importance-weighted objective, on a case with several draws per image (IWAE_SAMPLES) ------------------

IWAE_SAMPLES = 5


def iwae_jax_mean_of_log_weights(mp):
    """The bound as the mean of the log weights, not their log-mean-exp: the k draws' ELBO."""
    mp.setattr(jaxvae.likelihoods, "importance_weighting_gain", lambda lw: jnp.mean(lw, -1) - jnp.mean(lw, -1))


def iwae_jax_without_log_k(mp):
    """The log-sum-exp of the log weights without the log k: the loss off by log k, its gradient unchanged."""
    mp.setattr(jaxvae.likelihoods, "importance_weighting_gain", lambda lw: jax.nn.logsumexp(lw, -1) - jnp.mean(lw, -1))


def iwae_torch_mean_of_log_weights(mp):
    mp.setattr(torch_ref.train, "importance_weighting_gain", lambda lw: lw.mean(dim=1) - lw.mean(dim=1))


def iwae_torch_without_log_k(mp):
    mp.setattr(torch_ref.train, "importance_weighting_gain", lambda lw: torch.logsumexp(lw, dim=1) - lw.mean(dim=1))


KINDS = ("torch_", "jax_", "bfloat16_", "iwae_")
MUTANTS = [f for name, f in dict(globals()).items() if name.startswith(KINDS) and callable(f)]
TORCH_MUTANTS, JAX_MUTANTS, BFLOAT16_MUTANTS, IWAE_MUTANTS = (
    [f for f in MUTANTS if f.__name__.startswith(p)] for p in KINDS
)
