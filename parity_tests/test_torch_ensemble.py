"""torch_ref's ``FuncEnsemble`` (torch.func, the ensembling that the benchmark times jaxvae against) is K
models trained by ``torch_ref.train.train_step`` one by one: the same loss terms and weights after 3 steps.

Tolerance: vmap batches each member's convolutions and matmuls, which may sum in another order (float32,
relative 1e-5 on losses and 1e-4 on weights after three Adam steps; measured <= 1e-6)."""

import numpy as np
import torch

from torch_ref import VAE
from torch_ref.ensemble import FuncEnsemble
from torch_ref.train import train_step


def test_func_ensemble_is_the_models_trained_one_by_one(real_digits):
    torch.manual_seed(0)
    members, lr, steps = 3, 1e-3, 3
    models = [VAE(2) for _ in range(members)]
    alone = [VAE(2) for _ in range(members)]
    for a, m in zip(alone, models):
        a.load_state_dict(m.state_dict())
    ensemble = FuncEnsemble(models, lr)
    optimizers = [torch.optim.Adam(a.parameters(), lr=lr) for a in alone]
    x = torch.from_numpy(np.ascontiguousarray(real_digits[:8].transpose(0, 3, 1, 2)))  # (8, 1, 28, 28)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        xs = torch.stack([x[torch.randperm(8, generator=generator)] for _ in range(members)])  # (K, 8, 1, 28, 28)
        eps = torch.randn(members, 8, 2, generator=generator)
        got = ensemble.step(xs, eps).numpy()
        want = [train_step(a, o, xs[k], eps[k]) for k, (a, o) in enumerate(zip(alone, optimizers))]
        np.testing.assert_allclose(got, np.array(want), rtol=1e-5)
    for k, a in enumerate(alone):
        for name, value in ensemble.member_state_dict(k).items():
            np.testing.assert_allclose(value.numpy(), a.state_dict()[name].numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
