"""The torch side of the parity harness (imported where the harness runs: torch is optional): ``torch_capture``
runs a fresh ``torch_ref.VAE`` from a state dict (whatever ``torch_ref`` is at call time) forward and backward on the
given images and noise, in the given dtype, capturing every ``nn.Sequential`` child's output, both heads, the loss
of ``torch_ref.train.objective_loss`` and every gradient.

Given ``follow`` (another run's capture) and a zone half-width ``zone``, each LeakyReLU takes that run's branch
wherever its own input lies within ``zone * max|input|`` of the kink and the two disagree: how the float64 reference
is matched to a float32 run whose rounding put a pre-activation on the other side of 0. With ``bfloat16_operands``,
the reference computes what jaxvae's bfloat16 compute dtype computes, in exact arithmetic: every layer's weight and
input rounded to bfloat16 (biases not), taking the followed run's rounding where its input lies within ``zone`` of
that run's (a value within rounding of a bfloat16 tie may round either way; the count is reported). Gradients pass
the rounding unchanged, so they are exact math at the rounded operands.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np
import torch
from torch import nn

import torch_ref.model as torch_model
import torch_ref.train as torch_train
from jaxvae.parity.capture import KINKS, LAYER_INPUTS, Capture, KinkStats, to_nchw, to_nhwc


def torch_device() -> str:
    """``"cuda"`` where torch sees a GPU and JAX computes on one too; otherwise ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"


@contextlib.contextmanager
def float32_without_tf32():
    """Full float32 in torch for the duration: cuDNN's and cuBLAS's TF32 off, float32 matmuls at "highest".

    torch's ``backends.cudnn.allow_tf32`` defaults to True, which rounds convolution inputs to 10 mantissa bits
    on Ampere and newer GPUs; jaxvae asks XLA for ``Precision.HIGHEST``. Restores the previous settings.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32, torch.get_float32_matmul_precision()
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


def _branch_hook(module, follow_positive, zone: float, key: str, stats: KinkStats):
    """A forward hook for one LeakyReLU that takes ``follow_positive``'s branch inside the kink's zone."""

    def hook(_, inputs, output):
        x = inputs[0]
        natural = x > 0
        near = x.abs() <= zone * x.abs().max()
        stats.near[key] = int(near.sum())
        want = follow_positive.get(key)
        if want is None or tuple(want.shape) != tuple(x.shape):
            stats.flips[key] = 0
            return None
        want = torch.from_numpy(np.ascontiguousarray(want)).to(x.device)
        flip = near & (want != natural)
        stats.flips[key] = int(flip.sum())
        if not bool(flip.any()):
            return None
        other_branch = torch.where(want, x, module.negative_slope * x)
        return torch.where(flip, other_branch, output)

    return hook


def _hooks(model, captured: dict, follow_positive, zone: float, stats: KinkStats) -> list:
    """Capture hooks on every Sequential child and head; branch hooks on the LeakyReLUs when following a run."""
    hooks = []
    for prefix in ("encoder", "decoder"):
        for index, child in enumerate(getattr(model, prefix)):
            name = f"{prefix}.{index}"
            if isinstance(child, nn.LeakyReLU) and name in KINKS:
                hooks.append(
                    child.register_forward_hook(_branch_hook(child, follow_positive, zone, KINKS[name], stats))
                )
            hooks.append(child.register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o)))
    for head in ("z_mean", "z_log_var"):
        hooks.append(
            getattr(model, head).register_forward_hook(lambda m, i, o, key=f"{head}.out": captured.__setitem__(key, o))
        )
    return hooks


def round_to_bfloat16(x):
    """``x`` (a torch tensor) rounded to the nearest bfloat16, to nearest even, in its own dtype."""
    return x.to(torch.float32).to(torch.bfloat16).to(x.dtype)


def _rounding_hook(follow_inputs: dict, zone: float, name: str, stats: KinkStats):
    """A forward pre-hook that rounds a layer's input to bfloat16, taking the followed run's rounding within
    ``zone * max|input|`` of its own input; the gradient passes unchanged (straight through)."""

    def hook(_, inputs):
        x = inputs[0]
        rounded = round_to_bfloat16(x)
        theirs = follow_inputs.get(name)
        if theirs is not None and tuple(theirs.shape) == tuple(x.shape):
            theirs = torch.from_numpy(np.ascontiguousarray(theirs)).to(device=x.device, dtype=x.dtype)
            near = (x - theirs).abs() <= zone * x.abs().max()
            their_rounding = round_to_bfloat16(theirs)
            stats.flips[f"{name} input"] = int((near & (their_rounding != rounded)).sum())
            rounded = torch.where(near, their_rounding, rounded)
        return (x + (rounded - x).detach(),)

    return hook


def _bfloat16_operands(model, follow: Capture | None, zone: float, stats: KinkStats) -> list:
    """Round every parameterised layer's weight (in place) and input (by hook) to bfloat16; the hooks."""
    follow_inputs = {}
    if follow is not None:
        follow_inputs = {
            layer: to_nchw(follow.activations[source])
            for layer, source in LAYER_INPUTS.items()
            if source in follow.activations
        }
    hooks = []
    with torch.no_grad():
        for name, module in model.named_modules():
            if name in LAYER_INPUTS:
                module.weight.copy_(round_to_bfloat16(module.weight))
                hooks.append(module.register_forward_pre_hook(_rounding_hook(follow_inputs, zone, name, stats)))
    return hooks


def _gradient(parameter) -> np.ndarray:
    """A parameter's gradient as float64 numpy; zeros where the loss does not depend on it (``grad`` is None)."""
    if parameter.grad is None:
        return np.zeros(tuple(parameter.shape))
    return parameter.grad.detach().cpu().double().numpy()


def torch_capture(
    state_dict,
    x_nhwc,
    eps,
    dtype,
    device: str = "cpu",
    follow: Capture | None = None,
    zone: float = 0.0,
    reconstruction_weight: float = 1.0,
    likelihood: str = "gaussian",
    bfloat16_operands: bool = False,
    objective: str = "elbo",
) -> Capture:
    """Activations, loss and gradients of ``torch_ref.VAE`` loaded with ``state_dict``, in ``dtype`` on ``device``.

    With ``follow``, the LeakyReLUs take ``follow``'s branches inside the kink zone (``zone`` relative to the
    largest |pre-activation|); the returned capture's ``kinks`` counts the zone and the flips. With
    ``bfloat16_operands``, the layers' operands are rounded as jaxvae's bfloat16 compute dtype rounds them, and
    ``kinks.flips`` also counts, per layer input, the elements rounded as ``follow`` rounded them.
    """
    latent_dim = int(np.asarray(eps).shape[-1])
    model = torch_model.VAE(latent_dim)
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state_dict.items()}, strict=True)
    model = model.to(device=device, dtype=dtype)
    follow_positive = {k: to_nchw(v) for k, v in follow.positive().items()} if follow is not None else {}
    captured, stats = {}, KinkStats()
    hooks = _hooks(model, captured, follow_positive, zone, stats)
    if bfloat16_operands:
        hooks += _bfloat16_operands(model, follow, zone, stats)
    try:
        x = torch.from_numpy(np.ascontiguousarray(to_nchw(np.asarray(x_nhwc)))).to(device=device, dtype=dtype)
        noise = torch.from_numpy(np.array(eps)).to(device=device, dtype=dtype)
        # bernoulli: the decoder's logits, no Sigmoid
        z_mean, z_log_var, draws, z, output = torch_train.model_outputs(model, x, noise, likelihood)
        terms = (x, output, z, draws, z_mean, z_log_var, reconstruction_weight, likelihood, objective)
        loss = torch_train.objective_loss(*terms)[0]
        loss.backward()
    finally:
        for hook in hooks:
            hook.remove()
    activations = {k: to_nhwc(v.detach().cpu().double().numpy()) for k, v in captured.items()}
    grads = {k: _gradient(p) for k, p in model.named_parameters()}
    return Capture(activations, float(loss.detach().cpu().double()), grads, stats)
