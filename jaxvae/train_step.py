"""The pure training and evaluation functions: ``train_step(state, batch, key) -> (state, metrics)``.

Keys are explicit: the step's noise is ``fold_in(train_key, state.step)``, drawn for the whole batch, so a
resumed run draws the same noise as an uninterrupted one and a run on N devices the same as on one. Given a
mesh (``jaxvae.devices``), each device computes the gradient of its rows and the devices average them: the
same step, summed in another order. ``train_chunk`` runs many steps per dispatch with ``lax.scan`` over the
epoch's batches, which are already on the devices, each device holding its own rows.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvae.architecture import IMAGE_SHAPE
from jaxvae.devices import data_parallel
from jaxvae.likelihoods import (
    check_objective,
    get_likelihood,
    importance_weighting_gain,
    kl_divergence,
    log_importance_weights,
    objective_loss,
    reconstruction_error,
)
from jaxvae.model import VAE, shift_and_scale

METRIC_NAMES = ("loss", "reconstruction", "kl")
SAMPLE_STREAM = 1  # --binarize sample: folded into the step's key, independent of the step's reparameterisation noise


class TrainState(NamedTuple):
    """What a step carries: the model's ``params``, the optimiser's state, and ``step``, the steps done so far."""

    params: Any
    opt_state: Any
    step: jax.Array  # int32 scalar: steps completed so far


def make_optimizer(lr: float) -> optax.GradientTransformation:
    """Adam with torch's defaults (betas 0.9, 0.999; eps 1e-8), as the notebook trains."""
    return optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)


def bernoulli_sample(key, images):
    """A Bernoulli draw of ``images`` (each pixel 1 with probability its value), float32 0/1, same shape."""
    return jax.random.bernoulli(key, images).astype(images.dtype)


def fresh_state(model: VAE, optimizer, key) -> TrainState:
    """Fresh parameters (torch's default initialisation) and optimiser state, unjitted."""
    x = jnp.zeros((1, *IMAGE_SHAPE), jnp.float32)
    params = model.init(key, x, jax.random.PRNGKey(0))["params"]
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def init_state(model: VAE, optimizer, key) -> TrainState:
    """Fresh parameters (torch's default initialisation) and optimiser state. Jitted: run op by op, the
    initialisation compiles each convolution's pieces separately (12 s on a 2-core CPU instead of 1 s)."""
    return jax.jit(fresh_state, static_argnums=(0, 1))(model, optimizer, key)


def abstract_state(model: VAE, optimizer, sharding=None) -> TrainState:
    """The structure, shapes and dtypes of ``init_state``'s result, computed without running it (a restore
    target); every leaf placed with ``sharding`` when one is given."""
    shapes = jax.eval_shape(partial(fresh_state, model, optimizer), jax.random.PRNGKey(0))
    if sharding is None:
        return shapes
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), shapes)


def decoder_output(likelihood: str):
    """The ``VAE`` method whose output the loss of ``likelihood`` takes: images for gaussian, logits for bernoulli."""
    return getattr(VAE, get_likelihood(likelihood).decoder_output)


def _forward(model: VAE, params, x, eps, likelihood: str = "gaussian"):
    """``(z_mean, z_log_var, draws, z, output)`` of ``x`` with the given reparameterisation noise ``eps``, ``(B, L)``
    or ``(B, k, L)`` for k draws per image; ``draws`` (the noise) and ``z`` are ``(B, k, L)``, ``output``
    ``(B * k, ...)`` as ``decoder_output(likelihood)`` gives it."""
    z_mean, z_log_var = model.apply({"params": params}, x, method=VAE.encode)
    draws = eps.reshape(eps.shape[0], -1, eps.shape[-1])  # (B, k, L)
    z = shift_and_scale(draws, z_mean[:, None], z_log_var[:, None])  # (B, k, L)
    flat = z.reshape(-1, z.shape[-1])  # (B * k, L)
    return z_mean, z_log_var, draws, z, model.apply({"params": params}, flat, method=decoder_output(likelihood))


def _scan_sum(fn: Callable, zero, parts, width: int):
    """Sum of ``fn(*part)`` over ``parts`` (arrays with a leading axis of n parts) with ``lax.scan``, each
    iteration taking ``width`` parts as independent computations (which XLA may run at the same time)."""
    grouped = [a.reshape(a.shape[0] // width, width, *a.shape[1:]) for a in parts]  # (n / width, width, ...)

    def body(total, group):
        for part in zip(*group):
            total = jax.tree_util.tree_map(jnp.add, total, fn(*part))
        return total, None

    return jax.lax.scan(body, zero, grouped)[0]


def make_loss_fn(
    model: VAE, reconstruction_weight: float, likelihood: str = "gaussian", objective: str = "elbo"
) -> Callable:
    """``loss_fn(params, x, eps) -> (loss, metrics (3,))``; ``eps`` is the reparameterisation noise, ``(B, L)`` or
    ``(B, k, L)`` for k draws per image; ``objective`` is one of ``jaxvae.likelihoods.OBJECTIVES``
    (``objective_loss``)."""

    def loss_fn(params, x, eps):
        z_mean, z_log_var, draws, z, output = _forward(model, params, x, eps, likelihood)
        terms = objective_loss(x, output, z, draws, z_mean, z_log_var, reconstruction_weight, likelihood, objective)
        return terms[0], jnp.stack(terms)

    return loss_fn


def gradient_split(batch: int, micro_batch: int, concurrent: int = 1) -> tuple[int, int]:
    """``(micro, width)``: how ``batch_gradients`` computes a batch's gradient. Equal micro-batches of
    ``micro_batch`` when it divides the batch (else the whole batch at once), ``width`` of them side by side
    per scan iteration when ``concurrent`` divides their number (else one at a time)."""
    if not micro_batch or micro_batch >= batch or batch % micro_batch:
        return batch, 1
    return micro_batch, concurrent if (batch // micro_batch) % concurrent == 0 else 1


def batch_gradients(loss_fn: Callable, params, x, eps, micro_batch: int, concurrent: int = 1):
    """Gradient and metrics of the batch-mean loss; in equal micro-batches as ``gradient_split`` says.

    The mean over B equals the mean of the micro-batch means, so the step is the same step; the
    micro-batches keep each layer's working set in cache, which on XLA:CPU is faster for large B. Each scan
    iteration takes ``width`` micro-batches as independent computations, which XLA may run at the same time.
    """
    grad_fn = jax.grad(loss_fn, has_aux=True)
    batch = x.shape[0]
    micro, width = gradient_split(batch, micro_batch, concurrent)
    if micro == batch:
        return grad_fn(params, x, eps)
    parts = batch // micro
    xs = x.reshape(parts, micro, *x.shape[1:])  # (parts, micro, 28, 28, 1)
    epss = eps.reshape(parts, micro, *eps.shape[1:])  # (parts, micro, [k,] latent)
    zero = jax.tree_util.tree_map(jnp.zeros_like, (params, jnp.zeros(3, x.dtype)))
    total = _scan_sum(partial(grad_fn, params), zero, (xs, epss), width)
    return jax.tree_util.tree_map(lambda t: t / parts, total)


def make_train_step(
    model: VAE,
    optimizer,
    reconstruction_weight: float,
    micro_batch: int = 0,
    concurrent: int = 1,
    mesh=None,
    likelihood: str = "gaussian",
    binarize: str = "none",
    objective: str = "elbo",
    samples: int = 1,
) -> Callable:
    """``train_step(state, batch (B, 28, 28, 1), train_key) -> (state, metrics (3,))``, pure.

    The step's noise is ``normal(fold_in(train_key, state.step), (B, samples, latent))`` whatever ``micro_batch`` and
    the mesh are: ``samples`` (k) draws of z per image for ``objective`` (``jaxvae.likelihoods.objective_loss``); for
    k = 1 the same numbers as ``(B, latent)``. With a ``mesh``, the batch is split over its devices (B divisible by
    their number) and ``micro_batch`` applies to each device's rows. ``binarize="sample"`` trains on a Bernoulli draw
    of the batch keyed ``fold_in(step key, SAMPLE_STREAM)``: a fresh binary image each time an image is seen, i.e. once
    per epoch.
    """
    loss_fn = make_loss_fn(model, reconstruction_weight, likelihood, objective)
    gradients = partial(batch_gradients, loss_fn, micro_batch=micro_batch, concurrent=concurrent)
    if mesh is not None:
        gradients = data_parallel(gradients, mesh)

    def train_step(state: TrainState, batch, train_key):
        key = jax.random.fold_in(train_key, state.step)
        eps = jax.random.normal(key, (batch.shape[0], samples, model.latent_dim), batch.dtype)
        if binarize == "sample":
            batch = bernoulli_sample(jax.random.fold_in(key, SAMPLE_STREAM), batch)
        grads, metrics = gradients(state.params, batch, eps)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.step + 1), metrics

    return train_step


def make_member_step(
    model: VAE,
    micro_batch: int = 0,
    concurrent: int = 1,
    mesh=None,
    likelihood: str = "gaussian",
    binarize: str = "none",
    objective: str = "elbo",
    samples: int = 1,
) -> Callable:
    """``member_step(state, batch, (train_key, lr, reconstruction_weight)) -> (state, metrics (3,))``: the step of
    ``make_train_step`` with the learning rate and the reconstruction weight as arguments (float32 scalars), so
    that ``jax.vmap`` over all three trains the members of an ensemble side by side, each its own run."""

    settings = (micro_batch, concurrent, mesh, likelihood, binarize, objective, samples)

    def member_step(state: TrainState, batch, member):
        train_key, lr, reconstruction_weight = member
        optimizer = make_optimizer(lr)  # Adam's state does not depend on lr: the same state as the member's own run
        return make_train_step(model, optimizer, reconstruction_weight, *settings)(state, batch, train_key)

    return member_step


def epoch_batches(data_key, epoch, num_examples: int, batch_size: int):
    """The epoch's shuffled example indices ``(steps, B)``; the last partial batch is dropped."""
    steps = num_examples // batch_size
    order = jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)
    return order[: steps * batch_size].reshape(steps, batch_size)


def make_train_chunk(train_step: Callable, chunk_steps: int) -> Callable:
    """``train_chunk(state, epoch, first, train_key) -> (state, metrics (chunk_steps, 3))``.

    ``epoch`` holds the epoch's batches, ``(steps, B, 28, 28, 1)``, on the devices (each device its rows of
    every batch); the chunk runs ``epoch[first : first + chunk_steps]`` with ``lax.scan``.
    """

    def train_chunk(state, epoch, first, train_key):
        batches = jax.lax.dynamic_slice_in_dim(epoch, first, chunk_steps)  # (chunk, B, 28, 28, 1)
        return jax.lax.scan(lambda state, batch: train_step(state, batch, train_key), state, batches)

    return train_chunk


def evaluation_rows(count: int, batch: int, concurrent: int = 1, devices: int = 1) -> int:
    """How many rows ``evaluate`` takes for ``count`` images: whole groups of ``concurrent`` batches per device."""
    unit = batch * concurrent * devices
    return -(-count // unit) * unit


def padding_index(count: int, rows: int) -> np.ndarray:
    """The one padding rule for images evaluated in whole batches: rows ``0 .. rows - 1`` of ``count`` images,
    the rows past the last image repeating it (callers mask them out or drop their results)."""
    return np.minimum(np.arange(rows), count - 1)


def make_evaluate(
    model: VAE,
    reconstruction_weight: float,
    batch: int,
    concurrent: int = 1,
    mesh=None,
    likelihood: str = "gaussian",
    at_mean: bool = False,
    objective: str = "elbo",
    samples: int = 1,
) -> Callable:
    """``evaluate(params, images (N, 28, 28, 1), key, count=None) -> metrics (3,)``: the loss of ``objective`` with
    ``samples`` draws of z per image, the reconstruction (averaged over the draws), the KL.

    ``at_mean``: decode z = mean (no noise), the deterministic reconstruction.

    The metrics are means over the first ``count`` images (all N by default); rows beyond are padding. The noise is
    ``normal(key, (count, samples, latent))`` however the images are batched or split over a ``mesh``, so every
    ``batch``, ``concurrent`` and device count give the same result up to summation order. Images are padded to
    ``evaluation_rows`` by ``padding_index`` (a caller that splits them over a mesh pads them so), then each device
    scans its rows in groups of ``concurrent`` batches side by side (``_scan_sum``, as in ``batch_gradients``), masked.
    """
    devices = 1 if mesh is None else mesh.size

    check_objective(objective)

    def sums(params, x, eps, mask):  # one device's rows -> (reconstruction, KL, IWAE gain) summed over the unmasked
        def batch_sums(x, eps, mask):
            z_mean, z_log_var, draws, z, output = _forward(model, params, x, eps, likelihood)
            repeated = jnp.repeat(x, samples, axis=0)  # (batch * k, 28, 28, 1)
            per_draw = reconstruction_error(repeated, output, likelihood).reshape(z.shape[:2])  # (batch, k)
            gain = jnp.zeros_like(mask)
            if objective == "iwae":
                log_weights = log_importance_weights(per_draw, z, draws, z_log_var, reconstruction_weight)
                gain = importance_weighting_gain(log_weights)
            terms = (jnp.mean(per_draw, axis=1), kl_divergence(z_mean, z_log_var), gain)
            return jnp.stack([jnp.sum(term * mask) for term in terms])

        grouped = [a.reshape(-1, batch, *a.shape[1:]) for a in (x, eps, mask)]  # (rows / batch, batch, ...)
        return _scan_sum(batch_sums, jnp.zeros(3, x.dtype), grouped, concurrent)

    if mesh is not None:
        sums = data_parallel(sums, mesh, reduce=jax.lax.psum)

    def evaluate(params, images, key, count=None):
        n = images.shape[0] if count is None else count
        rows = evaluation_rows(images.shape[0], batch, concurrent, devices)
        zeros = lambda a: jnp.pad(a, [(0, rows - a.shape[0])] + [(0, 0)] * (a.ndim - 1))  # noqa: E731
        eps = jax.random.normal(key, (n, samples, model.latent_dim), images.dtype)
        eps = jnp.zeros_like(eps) if at_mean else eps
        padded = images[padding_index(images.shape[0], rows)] if rows > images.shape[0] else images
        rec, kl, gain = sums(params, padded, zeros(eps), zeros(jnp.ones(n, images.dtype))) / n
        return jnp.stack([reconstruction_weight * rec + kl - gain, rec, kl])

    return evaluate
