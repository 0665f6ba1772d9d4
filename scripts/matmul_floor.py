"""How fast the training step could be if only its matmuls cost anything: a floor measured against torch_ref.

    python scripts/matmul_floor.py [--batch-sizes 32,256] [--repeats 5] [--out DIR]

For each batch size, in one process and alternating repetitions (as ``jaxvae bench``):
- **jaxvae**: the training step as ``jaxvae train`` runs it;
- **matmuls only**: every ``dot_general`` of the step's gradient (the forward matmuls, their input and weight
  gradients, read from the jaxpr at the step's micro-batch shape), on random operands of the same shapes,
  micro-batches side by side as the step takes them, and nothing else: no im2col copies, pads, activations,
  loss or optimiser;
- **torch_ref**: eager PyTorch on the same batches from the same weights.

It prints images/s of each and the ratios. "matmuls only / torch" bounds what any arrangement of XLA
operations around these matmuls can reach; "jaxvae / matmuls only" is the share of the step that is matmul.
``--out`` writes ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxpr_dots import dot_flops, dot_generals
from jaxvae.parity.bench import checked_inputs, environment, jax_runner, median_seconds, torch_runner

from jaxvae.errors import UserError
from jaxvae.train_step import gradient_split, init_state, make_loss_fn


def step_dots(trainer, micro: int) -> list[dict]:
    """The dot_generals of one micro-batch's loss gradient, as ``batch_gradients`` computes it."""
    cfg = trainer.config
    loss_fn = make_loss_fn(trainer.model, cfg.reconstruction_weight)
    params = init_state(trainer.model, trainer.optimizer, jax.random.PRNGKey(0)).params
    x = jnp.zeros((micro, 28, 28, 1), jnp.float32)
    eps = jnp.zeros((micro, cfg.latent_dim), jnp.float32)
    return dot_generals(jax.make_jaxpr(jax.grad(loss_fn, has_aux=True))(params, x, eps).jaxpr)


def matmul_runner(dots: list[dict], width: int, iterations: int):
    """A warmed-up closure that runs ``iterations`` rounds of ``width`` side-by-side copies of ``dots``.

    Each copy has its own random operands; an optimization barrier with the loop carry keeps XLA from
    hoisting the loop-invariant matmuls out of the scan, without copying anything.
    """
    rng = np.random.default_rng(0)
    operands = [
        [(jnp.asarray(rng.random(d["lhs"], np.float32)), jnp.asarray(rng.random(d["rhs"], np.float32))) for d in dots]
        for _ in range(width)
    ]

    def body(carry, _, operands):
        total = jnp.float32(0)
        for copy in operands:
            for d, (lhs, rhs) in zip(dots, copy):
                lhs, rhs, _ = jax.lax.optimization_barrier((lhs, rhs, carry))
                total = total + jax.lax.dot_general(lhs, rhs, d["dims"]).ravel()[0]
        return carry + total * 1e-30, None

    run_all = jax.jit(
        lambda operands: jax.lax.scan(partial(body, operands=operands), jnp.float32(1), None, length=iterations)[0]
    )

    def run():
        jax.block_until_ready(run_all(operands))

    run()  # compile and warm up
    return run


def floor_batch_size(batch_size: int, args, dataset) -> dict:
    jax_run = jax_runner(batch_size, args, dataset)
    trainer = jax_run.trainer
    micro, width = gradient_split(batch_size, trainer.micro_batch, trainer.concurrent)
    dots = step_dots(trainer, micro)
    images = jax_run.steps * batch_size  # as many for each runner: steps x (batch // (micro x width)) rounds
    runners = {"jaxvae": jax_run.run, "matmuls_only": matmul_runner(dots, width, images // (micro * width))}
    runners["torch"], _ = torch_runner(jax_run.start_weights, dataset.train.images, jax_run.batches, trainer.config.lr)
    runners["torch"]()  # warm-up
    rates = {name: images / s for name, s in median_seconds(runners, args.repeats).items()}
    return {
        "batch_size": batch_size,
        "micro_batch": micro,
        "side_by_side": width,
        "dot_generals": len(dots),
        "matmul_mflop_per_image": sum(map(dot_flops, dots)) / micro / 1e6,
        "images_per_s": rates,
        "matmuls_only_over_torch": rates["matmuls_only"] / rates["torch"],
        "jaxvae_over_torch": rates["jaxvae"] / rates["torch"],
        "jaxvae_over_matmuls_only": rates["jaxvae"] / rates["matmuls_only"],
    }


def report(args) -> None:
    sizes, dataset = checked_inputs(args)
    env, results = environment(), []
    print(f"device: {env['jax_device']} ({env['machine']}); versions: {json.dumps(env['versions'])}")
    print(
        f"{'batch':>6} {'jaxvae':>8} {'matmuls only':>13} {'torch':>7} {'matmuls/torch':>14} {'jaxvae/torch':>13} "
        f"{'jaxvae/matmuls':>15}  (images/s)"
    )
    for b in sizes:
        r = floor_batch_size(b, args, dataset)
        rate = r["images_per_s"]
        print(
            f"{b:>6} {rate['jaxvae']:8.0f} {rate['matmuls_only']:13.0f} {rate['torch']:7.0f} "
            f"{r['matmuls_only_over_torch']:14.2f} "
            f"{r['jaxvae_over_torch']:13.2f} {r['jaxvae_over_matmuls_only']:15.2f}",
            flush=True,
        )
        results.append(r)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(
            json.dumps({"environment": env, "command": sys.argv, "results": results}, indent=2, default=str)
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", default="32,256")
    p.add_argument(
        "--images", type=int, default=4096, help="training images per timed repetition (whole chunks, at least one)"
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", type=Path, default=None, help="folder for summary.json")
    args = p.parse_args()
    args.conv_impl, args.compute_dtype, args.micro_batch, args.chunk_steps, args.devices = "auto", "float32", 0, 0, 0
    try:
        report(args)
    except UserError as exc:
        print(f"matmul_floor.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
