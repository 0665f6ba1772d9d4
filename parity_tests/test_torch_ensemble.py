"""torch_ref's ``FuncEnsemble`` (torch.func, the ensembling that the benchmark times jaxvae against) is K models
trained by ``torch_ref.train.train_step`` one by one: the same loss terms and weights after 3 steps.

In float64: the two paths (batched by vmap, or one model at a time) then differ by the order of float64 sums. Adam's
first steps are nearly sign steps, which can turn a rounding difference in a near-zero gradient into a whole step
(lr); in float64 no gradient element of these models lies within float64 rounding of zero, and 1e-9 holds on any
machine, while a member trained on another's batch or with another's noise is off by > 1e-3."""

import numpy as np
import torch

from torch_ref import VAE
from torch_ref.ensemble import FuncEnsemble
from torch_ref.train import train_step


def test_func_ensemble_is_the_models_trained_one_by_one(real_digits):
    torch.manual_seed(0)
    members, lr, steps = 3, 1e-3, 3
    models = [VAE(2).double() for _ in range(members)]
    alone = [VAE(2).double() for _ in range(members)]
    for a, m in zip(alone, models):
        a.load_state_dict(m.state_dict())
    ensemble = FuncEnsemble(models, lr)
    optimizers = [torch.optim.Adam(a.parameters(), lr=lr) for a in alone]
    x = torch.from_numpy(np.ascontiguousarray(real_digits[:8].transpose(0, 3, 1, 2))).double()  # (8, 1, 28, 28)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        xs = torch.stack([x[torch.randperm(8, generator=generator)] for _ in range(members)])  # (K, 8, 1, 28, 28)
        eps = torch.randn(members, 8, 2, generator=generator, dtype=torch.float64)
        got = ensemble.step(xs, eps).numpy()
        want = [train_step(a, o, xs[k], eps[k]) for k, (a, o) in enumerate(zip(alone, optimizers))]
        np.testing.assert_allclose(got, np.array(want), rtol=1e-9, atol=0)
    for k, a in enumerate(alone):
        for name, value in ensemble.member_state_dict(k).items():
            want = a.state_dict()[name].numpy()
            assert np.max(np.abs(value.numpy() - want)) <= 1e-9 * np.max(np.abs(want)), name
