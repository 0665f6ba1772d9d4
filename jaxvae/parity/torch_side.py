"""The torch side of the parity harness: ``torch_ref.VAE`` run forward and backward, captured layer by layer.

``torch_capture`` builds a fresh ``torch_ref.VAE`` from a state dict (so whatever ``torch_ref`` is at call time
is what runs), feeds it the given images and reparameterisation noise in the given dtype, and captures every
``nn.Sequential`` child's output, both heads, the loss of ``torch_ref.train.vae_loss`` and every gradient.

Given ``follow`` (another run's branches) and a zone half-width ``zone``, each LeakyReLU takes that run's branch
wherever its own input lies within ``zone * max|input|`` of the kink and the two runs disagree; elsewhere it
computes as it always does. That is how the float64 reference is matched to a float32 run whose rounding put a
pre-activation on the other side of 0 (see ``jaxvae.parity.method``).

With ``bfloat16_operands``, the reference computes what jaxvae's bfloat16 compute dtype computes, in exact
arithmetic: every convolution's and linear layer's weight and input rounded to bfloat16 (biases not), the rest
float64. Where its own input lies within ``zone`` of the followed run's (``follow.activations``, whose inputs it
names by ``jaxvae.parity.capture.LAYER_INPUTS``), it takes that run's rounding, since a value within rounding of a
bfloat16 tie may round either way; the count of elements where the two roundings differ is reported. Gradients
pass the rounding unchanged (the derivative of a cast), so they are exact math at the rounded operands.
"""

from __future__ import annotations

import contextlib

import numpy as np

from jaxvae.parity.capture import KINKS, LAYER_INPUTS, Capture, KinkStats, to_nchw, to_nhwc


def torch_device() -> str:
    """``"cuda"`` where torch sees a GPU and JAX computes on one too; otherwise ``"cpu"``."""
    import jax
    import torch

    return "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"


@contextlib.contextmanager
def float32_without_tf32():
    """Full float32 in torch for the duration: cuDNN's and cuBLAS's TF32 off, float32 matmuls at "highest".

    torch's ``backends.cudnn.allow_tf32`` defaults to True, which rounds convolution inputs to 10 mantissa bits
    on Ampere and newer GPUs; jaxvae asks XLA for ``Precision.HIGHEST``. Restores the previous settings.
    """
    import torch

    saved = (
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


def _branch_hook(module, follow_positive, zone: float, key: str, stats: KinkStats):
    """A forward hook for one LeakyReLU that takes ``follow_positive``'s branch inside the kink's zone."""
    import torch

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
    from torch import nn

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
    import torch

    return x.to(torch.float32).to(torch.bfloat16).to(x.dtype)


def _rounding_hook(follow_inputs: dict, zone: float, name: str, stats: KinkStats):
    """A forward pre-hook that rounds a layer's input to bfloat16, taking the followed run's rounding within
    ``zone * max|input|`` of its own input; the gradient passes unchanged (straight through)."""
    import torch

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
    import torch

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
) -> Capture:
    """Activations, loss and gradients of ``torch_ref.VAE`` loaded with ``state_dict``, in ``dtype`` on ``device``.

    With ``follow``, the LeakyReLUs take ``follow``'s branches inside the kink zone (``zone`` relative to the
    largest |pre-activation|); the returned capture's ``kinks`` counts the zone and the flips. With
    ``bfloat16_operands``, the layers' operands are rounded as jaxvae's bfloat16 compute dtype rounds them, and
    ``kinks.flips`` also counts, per layer input, the elements rounded as ``follow`` rounded them.
    """
    import torch

    import torch_ref.model as torch_model
    import torch_ref.train as torch_train

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
        z_mean, z_log_var, output = torch_train.model_outputs(
            model, x, noise, likelihood
        )  # bernoulli: no decoder.10 (Sigmoid)
        loss, _, _ = torch_train.vae_loss(x, output, z_mean, z_log_var, reconstruction_weight, likelihood)
        loss.backward()
    finally:
        for hook in hooks:
            hook.remove()
    activations = {k: to_nhwc(v.detach().cpu().double().numpy()) for k, v in captured.items()}
    grads = {k: _gradient(p) for k, p in model.named_parameters()}
    return Capture(activations, float(loss.detach().cpu().double()), grads, stats)
