"""Data parallel on 4 virtual CPU devices: the same step, the same evaluation, the same run, bit-exact resume.

Run by ``tests/test_devices.py`` in a process started with ``--xla_force_host_platform_device_count=4``.
"""

import json
from functools import partial

import jax
import numpy as np
import pytest

from jaxvae.cli import main
from jaxvae.devices import data_parallel, make_mesh, put_rows
from jaxvae.errors import UserError
from jaxvae.model import VAE
from jaxvae.run.config import RunConfig
from jaxvae.run.training import train
from jaxvae.train_step import batch_gradients, evaluation_rows, init_state, make_evaluate, make_loss_fn, make_optimizer

BATCH, LATENT = 32, 2
SMALL = dict(epochs=2, batch_size=32, train_examples=256, test_examples=100, chunk_steps=4)


def test_four_devices_are_visible():
    assert len(jax.devices()) == 4, "run with XLA_FLAGS=--xla_force_host_platform_device_count=4"


@pytest.fixture(scope="module")
def setup():
    model = VAE(LATENT, conv_impl="matmul")
    params = init_state(model, make_optimizer(1e-3), jax.random.PRNGKey(0)).params
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 28, 28, 1), np.float32)
    eps = rng.standard_normal((BATCH, LATENT)).astype(np.float32)
    return model, params, x, eps


@pytest.mark.parametrize("devices", [1, 2, 4])
def test_gradient_over_devices_is_the_batch_gradient(setup, devices):
    """Each device's rows in micro-batches of 8, two side by side, averaged: the whole batch's gradient.

    Tolerance: the same float32 sums in another order; 1e-5 of each tensor's norm is ~100x float32's rounding of
    a 32-term mean, and a wrong scale (a psum for a pmean, a device's rows dropped) is off by >= 1/4.
    """
    model, params, x, eps = setup
    loss_fn = make_loss_fn(model, 1.0)
    whole, whole_metrics = jax.jit(lambda p: batch_gradients(loss_fn, p, x, eps, 0))(params)
    mesh = make_mesh(devices)
    split = data_parallel(partial(batch_gradients, loss_fn, micro_batch=8, concurrent=2), mesh)
    rows = np.arange(BATCH)
    grads, metrics = jax.jit(split)(params, put_rows(x, rows, mesh, 0), put_rows(eps, rows, mesh, 0))
    np.testing.assert_allclose(metrics, whole_metrics, rtol=1e-5)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves(whole)):
        assert np.linalg.norm(np.asarray(a) - b) <= 1e-5 * np.linalg.norm(b), jax.tree_util.keystr(path)


@pytest.mark.parametrize("devices", [2, 4])
def test_evaluation_over_devices_is_the_split_mean(setup, devices):
    """37 images in batches of 5 over the devices (padded to whole groups, masked) against one device, unpadded."""
    model, params, _, _ = setup
    images = np.random.default_rng(1).random((37, 28, 28, 1), np.float32)
    key = jax.random.PRNGKey(3)
    want = jax.jit(make_evaluate(model, 0.5, 5))(params, images, key)
    mesh = make_mesh(devices)
    index = np.minimum(np.arange(evaluation_rows(37, 5, 1, devices)), 36)
    got = jax.jit(make_evaluate(model, 0.5, 5, mesh=mesh), static_argnums=3)(
        params, put_rows(images, index, mesh, 0), key, 37
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)


def _losses(out):
    return np.array([json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 2-epoch run (--seed, --batch-size) on 1 and 4 devices: folder and summary of each (2 devices: the
    gradient and evaluation tests above, and the run on two processes in tests/test_devices.py)."""
    folder = tmp_path_factory.mktemp("devices")
    return {d: (folder / f"d{d}", train(RunConfig(devices=d, **SMALL), folder / f"d{d}")) for d in (1, 4)}


def test_training_on_one_and_four_devices(runs):
    """The first step's loss to float32 rounding of its sums (2e-6, the parity bound of one loss), every later
    one within 1e-3 (Adam amplifies the rounding of the reordered sums; measured <= 1.6e-7 over these 16 steps);
    devices in summary.json."""
    losses = {}
    for devices, (out, summary) in runs.items():
        assert summary["devices"]["count"] == devices and summary["devices"]["mesh_shape"] == {"data": devices}
        assert summary["devices"]["processes"] == 1 and summary["traces"] == {"train_chunk": 1, "evaluate": 1}
        losses[devices] = _losses(out)
    assert abs(losses[4][0] - losses[1][0]) <= 2e-6 * losses[1][0]
    np.testing.assert_allclose(losses[4], losses[1], rtol=1e-3)


def test_resume_on_four_devices_is_bit_exact(runs, tmp_path):
    uninterrupted, _ = runs[4]
    resumed = tmp_path / "resumed"
    train(RunConfig(devices=4, **{**SMALL, "epochs": 1}), resumed)
    train(RunConfig(devices=4, **SMALL), resumed, resume=True)
    assert (resumed / "metrics.jsonl").read_text() == (uninterrupted / "metrics.jsonl").read_text()


@pytest.mark.parametrize(
    "config, message",
    [
        (
            dict(batch_size=30, devices=4),
            "--batch-size 30 does not split over 4 devices; use a multiple of 4 (e.g. --batch-size 32) or --devices 3",
        ),
        (dict(devices=8), "--devices 8: only 4 cpu device(s) visible"),
    ],
)
def test_refused_device_settings(tmp_path, config, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(RunConfig(**{**SMALL, **config}), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()


def test_bench_over_two_devices(capsys):
    assert (
        main(
            [
                "bench",
                "--devices",
                "2",
                "--no-torch",
                "--json",
                "--batch-sizes",
                "32",
                "--images",
                "64",
                "--repeats",
                "1",
            ]
        )
        == 0
    )
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result["devices"] == 2 and result["jax_images_per_s"] > 0


def test_an_ensemble_over_four_devices_is_the_ensemble_on_one(mnist5k):
    """Two members' chunk (8 steps, both members vmapped together) with each batch split over 4 devices, against
    the same on one device: the first loss to 2e-6 and the rest within 1e-3, as for a single run above (measured
    <= 2e-7). (One member at a time, CPU's default, is the run on several processes in tests/test_devices.py.)"""
    from jaxvae.run.ensemble import EnsembleSetup
    from jaxvae.run.members import member_grid

    images = mnist5k.train.images[:256]
    got = {}
    for devices in (1, 4):
        base = RunConfig(batch_size=32, train_examples=256, chunk_steps=8, devices=devices, reconstruction_weight=0.5)
        ensemble = EnsembleSetup.build(member_grid(base, {"seed": (1, 2)}), member_group=2)
        keys = ensemble.member_keys()
        order = np.asarray(ensemble.epoch_order(256)(keys.data, 1))  # (2, 8, 32)
        epoch = put_rows(images, order, ensemble.mesh, axis=ensemble.batch_axis)  # (2, 8, 32, 28, 28, 1)
        chunk = jax.jit(ensemble.train_chunk(8))
        got[devices] = np.asarray(chunk(ensemble.fresh_state(keys), epoch, 0, ensemble.step_constants(keys))[1])
    assert got[4].shape == (2, 8, 3)
    np.testing.assert_allclose(got[4][:, 0, 0], got[1][:, 0, 0], rtol=2e-6)
    np.testing.assert_allclose(got[4], got[1], rtol=1e-3)
