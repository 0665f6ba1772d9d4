"""Side-by-side comparison of jaxvae and torch_ref from the same weights: activations, loss, gradients.

Used by ``jaxvae parity`` and by ``parity_tests/``. Differences are reported as the largest absolute
difference and as a relative one, ``max|a - b| / max|b|`` (the scale of the reference tensor, so values near
zero do not blow it up). A tensor passes when ``max|a - b| <= atol * max(1, max|b|)``: an absolute bound for
values of order one, a relative one for larger values.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.convert import params_from_torch
from jaxvae.latent import shift_and_scale
from jaxvae.model import VAE
from jaxvae.train_step import make_loss_fn

# float32 tolerances (issue 2); jaxvae and torch sum in different orders, so a few ULPs differ.
ACTIVATION_ATOL = 1e-5  # every activation, encoder and decoder outputs: max abs diff at scale 1
LOSS_RTOL = 1e-6  # the loss for the same eps
GRAD_RTOL = 1e-5  # every parameter's gradient, relative to that gradient's largest entry


@dataclass(frozen=True)
class Row:
    """One compared tensor."""

    name: str
    shape: tuple
    max_abs: float
    max_rel: float
    tolerance: float
    passed: bool


def compare(name: str, got, want, tolerance: float, relative_only: bool = False) -> Row:
    """Compare ``got`` (jaxvae) against ``want`` (torch); both numpy-convertible, same shape."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return Row(name, want.shape, float("inf"), float("inf"), tolerance, False)
    max_abs = float(np.max(np.abs(got - want))) if got.size else 0.0
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    passed = max_rel <= tolerance if relative_only else max_abs <= tolerance * max(1.0, scale)
    return Row(name, want.shape, max_abs, max_rel, tolerance, passed)


def to_nhwc(value: np.ndarray) -> np.ndarray:
    """torch NCHW activations -> NHWC; other ranks unchanged."""
    return value.transpose(0, 2, 3, 1) if value.ndim == 4 else value


def torch_activations(torch_model, x_nhwc: np.ndarray, eps: np.ndarray) -> dict[str, np.ndarray]:
    """Every ``nn.Sequential`` child's output and both heads of ``torch_model``, keyed like jaxvae's sown names."""
    import torch

    captured, hooks = {}, []
    for prefix in ("encoder", "decoder"):
        for index, child in enumerate(getattr(torch_model, prefix)):
            key = f"{prefix}.{index}"
            hooks.append(child.register_forward_hook(lambda m, i, o, key=key: captured.__setitem__(key, o)))
    for head in ("z_mean", "z_log_var"):
        hooks.append(getattr(torch_model, head).register_forward_hook(lambda m, i, o, key=f"{head}.out": captured.__setitem__(key, o)))
    try:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
            torch_model(x, torch.from_numpy(np.array(eps, np.float32)))
    finally:
        for hook in hooks:
            hook.remove()
    return {k: to_nhwc(v.detach().cpu().numpy()) for k, v in captured.items()}


def jax_activations(variables, x_nhwc, eps, latent_dim: int, conv_impl: str) -> dict[str, np.ndarray]:
    """The same activations from ``jaxvae.model.VAE``, given the same ``eps`` as torch."""
    model = VAE(latent_dim, conv_impl=conv_impl)

    def forward(module, x, eps):
        z_mean, z_log_var = module.encode(x)
        return module.decode(shift_and_scale(eps, z_mean, z_log_var))

    _, state = model.apply(variables, x_nhwc, eps, method=forward, mutable=["intermediates"])
    return {k: np.asarray(v[0]) for k, v in state["intermediates"].items()}


def activation_rows(torch_model, variables, x, eps, conv_impl: str) -> list[Row]:
    """One row per activation, in the order torch computes them."""
    latent_dim = np.asarray(eps).shape[-1]
    want = torch_activations(torch_model, x, eps)
    got = jax_activations(variables, x, eps, latent_dim, conv_impl)
    return [compare(name, got.get(name, np.full((0,), np.nan)), ref, ACTIVATION_ATOL) for name, ref in want.items()]


def torch_loss_and_grads(torch_model, x_nhwc, eps, reconstruction_weight: float = 1.0):
    """torch's loss and each parameter's gradient (torch layout), for the given ``eps``."""
    import torch

    from torch_ref.train import vae_loss as torch_vae_loss

    torch_model.zero_grad()
    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    _, z_mean, z_log_var, decoded = torch_model(x, torch.from_numpy(np.array(eps, np.float32)))
    loss, _, _ = torch_vae_loss(x, decoded, z_mean, z_log_var, reconstruction_weight)
    loss.backward()
    grads = {k: p.grad.detach().cpu().numpy() for k, p in torch_model.named_parameters()}
    return float(loss.detach()), grads


def jax_loss_and_grads(variables, x, eps, conv_impl: str, reconstruction_weight: float = 1.0):
    """jaxvae's training loss and its gradients for the given ``eps``, mapped to torch's keys and layout."""
    from jaxvae.convert import params_to_torch

    model = VAE(np.asarray(eps).shape[-1], conv_impl=conv_impl)
    loss_fn = make_loss_fn(model, reconstruction_weight)  # the loss the training step differentiates
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"], x, jnp.asarray(eps))
    return float(loss), params_to_torch(grads)


def gradient_rows(torch_model, variables, x, eps, conv_impl: str) -> tuple[Row, list[Row]]:
    """The loss row and one row per parameter gradient."""
    torch_loss, torch_grads = torch_loss_and_grads(torch_model, x, eps)
    jax_loss, jax_grads = jax_loss_and_grads(variables, x, eps, conv_impl)
    loss_row = compare("loss", np.array([jax_loss]), np.array([torch_loss]), LOSS_RTOL, relative_only=True)
    grad_rows = [compare(f"grad {k}", jax_grads[k], g, GRAD_RTOL, relative_only=True) for k, g in torch_grads.items()]
    return loss_row, grad_rows


def run_parity(torch_model, x, eps, conv_impl: str) -> dict[str, list[Row]]:
    """All comparisons for one implementation; ``variables`` come from the torch model's state dict."""
    variables = jax.tree_util.tree_map(jnp.asarray, params_from_torch(torch_model.state_dict()))
    loss_row, grad_rows = gradient_rows(torch_model, variables, x, eps, conv_impl)
    return {"activations": activation_rows(torch_model, variables, x, eps, conv_impl), "loss": [loss_row], "gradients": grad_rows}


def format_table(title: str, rows: list[Row]) -> str:
    """A fixed-width table of rows under a title line."""
    lines = [title, f"  {'tensor':<30} {'shape':<18} {'max abs':>10} {'max rel':>10} {'tol':>8}  result"]
    for r in rows:
        shape = "x".join(str(d) for d in r.shape)
        verdict = "pass" if r.passed else "FAIL"
        lines.append(f"  {r.name:<30} {shape:<18} {r.max_abs:10.2e} {r.max_rel:10.2e} {r.tolerance:8.0e}  {verdict}")
    return "\n".join(lines)
