"""torch's own ensembling of the reference model, built as PyTorch's "model ensembling" tutorial builds it:
``torch.func.stack_module_state`` stacks K models' parameters, ``vmap`` over ``grad`` of a ``functional_call``
computes every member's gradient in one call, and one Adam steps the stacked parameters (Adam is elementwise,
so each member's slice follows an Adam of its own). What ``jaxvae bench --members`` times jaxvae's ensembles
against; ``parity_tests/test_torch_ensemble.py`` checks it against K separate ``train_step`` calls.
"""

from __future__ import annotations

import copy

import torch

from torch_ref.train import vae_loss


class FuncEnsemble:
    """K ``torch_ref.VAE`` models trained side by side; ``step(xs (K, B, 1, 28, 28), eps (K, B, L))`` is one Adam
    step of every member on its own batch and noise, returning the loss terms ``(K, 3)``."""

    def __init__(self, models: list[torch.nn.Module], lr: float, reconstruction_weight: float = 1.0):
        self.params, self.buffers = torch.func.stack_module_state(models)
        base = copy.deepcopy(models[0]).to("meta")

        def member_loss(params, buffers, x, eps):
            _, z_mean, z_log_var, decoded = torch.func.functional_call(base, (params, buffers), (x, eps))
            loss, reconstruction, kl = vae_loss(x, decoded, z_mean, z_log_var, reconstruction_weight)
            return loss, torch.stack([loss, reconstruction, kl]).detach()

        self.gradients = torch.func.vmap(torch.func.grad(member_loss, has_aux=True))
        self.optimizer = torch.optim.Adam(list(self.params.values()), lr=lr)

    def step(self, xs: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        grads, metrics = self.gradients(self.params, self.buffers, xs, eps)
        for name, param in self.params.items():
            param.grad = grads[name]
        self.optimizer.step()
        return metrics

    def member_state_dict(self, k: int) -> dict:
        """Member ``k``'s parameters as a state dict of ``torch_ref.VAE``."""
        return {name: param[k].detach().clone() for name, param in self.params.items()}
