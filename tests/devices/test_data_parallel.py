"""Data parallel on 4 virtual CPU devices: the same gradient and evaluation (float64), a run over the devices whose
first step is the one-device run's, a bit-exact resume (and one of a run trained on one device), and the refusals of
the device settings. (An ensemble over devices, vmapped: the run on two processes in tests/test_devices.py.)

Run by ``tests/test_devices.py`` in a process started with ``--xla_force_host_platform_device_count=4``, which
passes the suite's one-device run in ``JAXVAE_SMALL_RUN``.
"""

import json
import os
import shutil
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import SMALL_RUN
from jaxvae.devices import data_parallel, make_mesh, put_rows
from jaxvae.errors import UserError
from jaxvae.model import VAE
from jaxvae.parity.method import F32_LOSS_RTOL
from jaxvae.run.cli import main
from jaxvae.run.config import RunConfig
from jaxvae.run.training import train
from jaxvae.train_step import batch_gradients, evaluation_rows, init_state, make_evaluate, make_loss_fn, make_optimizer

BATCH, LATENT = 32, 2
DEVICES = ["--devices", "4"]


def test_four_devices_are_visible():
    assert len(jax.devices()) == 4, "run with XLA_FLAGS=--xla_force_host_platform_device_count=4"


@pytest.fixture
def float64_setup():
    """Parameters, images and noise in float64: the devices' results and one device's then differ by the order of
    float64 sums (~1e-16 relative), so 1e-10 holds on any machine, and a wrong scale or a lost row is off by >= 1/4."""
    model = VAE(LATENT)
    params = init_state(model, make_optimizer(1e-3), jax.random.PRNGKey(0)).params
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        yield model, params, rng.random((BATCH, 28, 28, 1)), rng.standard_normal((BATCH, LATENT))  # the test: in x64


def test_gradient_over_devices_is_the_batch_gradient(float64_setup, devices=4):
    """Each device's rows in micro-batches of 8, two side by side, averaged: the whole batch's gradient."""
    model, params, x, eps = float64_setup
    loss_fn = make_loss_fn(model, 1.0)
    whole, whole_metrics = jax.jit(lambda p: batch_gradients(loss_fn, p, x, eps, 0))(params)
    mesh = make_mesh(devices)
    split = data_parallel(partial(batch_gradients, loss_fn, micro_batch=8, concurrent=2), mesh)
    rows = np.arange(BATCH)
    grads, metrics = jax.jit(split)(params, put_rows(x, rows, mesh, 0), put_rows(eps, rows, mesh, 0))
    np.testing.assert_allclose(metrics, whole_metrics, rtol=1e-10)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves(whole)):
        assert np.linalg.norm(np.asarray(a) - b) <= 1e-10 * np.linalg.norm(b), jax.tree_util.keystr(path)


def test_evaluation_over_devices_is_the_split_mean(float64_setup):
    """37 images in batches of 5 over the devices (padded to whole groups, masked) against one device, unpadded."""
    model, params, _, _ = float64_setup
    images = np.random.default_rng(1).random((37, 28, 28, 1))
    key = jax.random.PRNGKey(3)
    want = jax.jit(make_evaluate(model, 0.5, 5))(params, images, key)
    mesh = make_mesh(4)
    index = np.minimum(np.arange(evaluation_rows(37, 5, 1, 4)), 36)
    got = jax.jit(make_evaluate(model, 0.5, 5, mesh=mesh), static_argnums=3)(
        params, put_rows(images, index, mesh, 0), key, 37
    )
    np.testing.assert_allclose(got, want, rtol=1e-10)


def _records(folder: Path) -> list[str]:
    return (folder / "metrics.jsonl").read_text().splitlines()


@pytest.fixture(scope="session")
def four_devices(tmp_path_factory):
    """small_run's flags over the 4 devices for 2 epochs, never stopped."""
    out = tmp_path_factory.mktemp("devices") / "four"
    assert main(["train", "--out", str(out), "--epochs", "2", *SMALL_RUN, *DEVICES]) == 0
    return out


@pytest.mark.long  # ~25 s: jaxvae train over the devices (its gradient and evaluation: the tests above)
def test_a_run_over_four_devices(four_devices):
    """Its first step against the run on one device: one float32 forward pass each, each within ``F32_LOSS_RTOL``
    of float64 (the parity harness's bound), so within twice that of each other on any machine. Later steps are not
    compared: Adam turns rounding into whole steps."""
    summary = json.loads((four_devices / "summary.json").read_text())
    assert summary["devices"]["count"] == 4 and summary["devices"]["mesh_shape"] == {"data": 4}
    assert summary["traces"] == {"train_chunk": 1, "evaluate": 1}
    got, want = (json.loads(_records(f)[0])["loss"] for f in (four_devices, Path(os.environ["JAXVAE_SMALL_RUN"])))
    assert abs(got - want) <= 2 * F32_LOSS_RTOL * want


@pytest.mark.long
def test_resume_over_four_devices_is_bit_exact_and_takes_a_run_of_one_device(four_devices, tmp_path):
    """A checkpoint is restored into the devices of the run that resumes it, whatever devices wrote it."""
    out = tmp_path / "resumed"
    assert main(["train", "--out", str(out), "--epochs", "1", *SMALL_RUN, *DEVICES]) == 0
    assert main(["train", "--out", str(out), "--epochs", "2", "--resume", *SMALL_RUN, *DEVICES]) == 0
    assert _records(out) == _records(four_devices)
    moved = shutil.copytree(os.environ["JAXVAE_SMALL_RUN"], tmp_path / "moved")  # trained on one device
    assert main(["train", "--out", str(moved), "--epochs", "3", "--resume", *SMALL_RUN, *DEVICES]) == 0


@pytest.mark.parametrize(
    "config, message",
    [
        (
            dict(batch_size=30, devices=4),
            "--batch-size 30 does not split over 4 devices; use a multiple of 4 (e.g. --batch-size 32) or --devices 3",
        ),
        (dict(devices=5), "--devices 5: only 4 cpu device(s) visible"),
    ],
)
def test_refused_device_settings(tmp_path, config, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(RunConfig(**{"train_examples": 256, **config}), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
