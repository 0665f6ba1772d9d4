"""The torch side of the parity harness: ``torch_ref.VAE`` run forward and backward, captured layer by layer.

``torch_capture`` builds a fresh ``torch_ref.VAE`` from a state dict (so whatever ``torch_ref`` is at call time
is what runs), feeds it the given images and reparameterisation noise in the given dtype, and captures every
``nn.Sequential`` child's output, both heads, the loss of ``torch_ref.train.vae_loss`` and every gradient.

Given ``follow`` (another run's branches) and a zone half-width ``zone``, each LeakyReLU takes that run's branch
wherever its own input lies within ``zone * max|input|`` of the kink and the two runs disagree; elsewhere it
computes as it always does. That is how the float64 reference is matched to a float32 run whose rounding put a
pre-activation on the other side of 0 (see ``jaxvae.parity.method``).
"""

from __future__ import annotations

import contextlib

import numpy as np

from jaxvae.parity.capture import KINKS, Capture, KinkStats, to_nchw, to_nhwc


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
) -> Capture:
    """Activations, loss and gradients of ``torch_ref.VAE`` loaded with ``state_dict``, in ``dtype`` on ``device``.

    With ``follow``, the LeakyReLUs take ``follow``'s branches inside the kink zone (``zone`` relative to the
    largest |pre-activation|); the returned capture's ``kinks`` counts the zone and the flips.
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
