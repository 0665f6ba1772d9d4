"""The whole model against torch_ref: the harness passes the correct port at every seed, and the public API agrees.

``run_parity`` gives three verdicts (jaxvae float64 exact, jaxvae float32 and torch float32 against float64) for
each convolution implementation; tolerances and their grounds are in ``jaxvae.parity`` and docs/parity.md.
"""

import numpy as np
import pytest
import torch

from jaxvae import VAE, params_from_torch, vae_loss
from jaxvae.parity.check import parity_inputs, sweep_case
from jaxvae.parity.method import run_parity
from torch_ref import VAE as TorchVAE
from torch_ref.train import vae_loss as torch_vae_loss

SEEDS = range(2)  # the suite's subset; scripts/parity_sweep.py runs 20 seeds of every case (docs/parity.md)
ROWS = 8 + 11 + 2 + 1 + 22  # encoder/decoder children, 2 heads, loss, 11 layers' weight and bias
# The suite's subset compares one implementation per case, each implementation at both batch sizes; the sweep
# script compares all three in every case. (test_mutants.py and test_parity_cli.py run all three at batch 8
# and at the defaults.)
IMPL_OF_CASE = {(1, 2): "matmul", (32, 2): "xla", (1, 16): "pad", (32, 16): "matmul"}


@pytest.mark.parametrize("batch, latent_dim", list(IMPL_OF_CASE))
def test_no_false_alarms(latent_dim, batch):
    """Weights, digits and noise all drawn from each seed; the float64, float32 and bfloat16 verdicts."""
    result = sweep_case(latent_dim, batch, SEEDS, conv_impls=[IMPL_OF_CASE[batch, latent_dim]])
    assert result["rows"] == [ROWS]
    assert not result["failed"], result


@pytest.mark.parametrize("impl", ["xla", "matmul"])
def test_encode_and_decode_outputs(impl, real_digits):
    """The public methods, used as a user would: encode, then decode the same z in both frameworks (float32;
    outputs have no kink, so 1e-5 at scale one bounds float32 rounding through nine layers)."""
    torch.manual_seed(3)
    model = TorchVAE(2)
    variables = params_from_torch(model.state_dict())
    vae = VAE(2, conv_impl=impl)
    z_mean, z_log_var = vae.apply(variables, real_digits, method=VAE.encode)
    xt = torch.from_numpy(real_digits.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        features = model.encoder(xt)
        np.testing.assert_allclose(z_mean, model.z_mean(features).numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(z_log_var, model.z_log_var(features).numpy(), atol=1e-5, rtol=0)
        z = np.random.default_rng(0).standard_normal((32, 2)).astype(np.float32)
        decoded_t = model.decoder(torch.from_numpy(z)).numpy().transpose(0, 2, 3, 1)
    decoded = vae.apply(variables, z, method=VAE.decode)
    np.testing.assert_allclose(decoded, decoded_t, atol=1e-5, rtol=0)
    loss = vae_loss(real_digits, decoded, z_mean, z_log_var)[0]
    loss_t = torch_vae_loss(
        xt,
        torch.from_numpy(decoded_t.transpose(0, 3, 1, 2).copy()),
        torch.from_numpy(np.array(z_mean)),
        torch.from_numpy(np.array(z_log_var)),
    )[0]
    assert abs(float(loss) - float(loss_t)) <= 1e-6 * abs(float(loss_t))


def test_trained_weights_pass(tmp_path):
    """Weights exported after a short training run pass as torch_ref's initial ones do."""
    from jaxvae.cli import main
    from jaxvae.parity.check import load_torch_weights

    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--train-examples", "512", "--test-examples", "64", "--out", str(run)]) == 0
    assert main(["export", "--run", str(run), "--to", str(tmp_path / "trained.pt")]) == 0
    state = {k: v.numpy() for k, v in load_torch_weights(tmp_path / "trained.pt").items()}
    x, eps = parity_inputs(32, 2, 11)
    report = run_parity(state, x, eps, ["matmul"])  # the form it trained with; the others: the other tests
    assert report.passed, [(v.label, [(r.name, r.rel) for r in v.rows if not r.passed]) for v in report.verdicts()]
