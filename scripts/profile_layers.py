"""Where a training step's time goes: each convolution's forward and backward, per implementation.

    python scripts/profile_layers.py --batch 8 [--impls xla,matmul,pad] [--compute-dtype bfloat16] [--repeats 10]

Each layer of the seed model is jitted alone (forward, then the VJP a training step needs: kernel and input
gradients, kernel only for the first layer), timed as the median of ``--repeats`` runs after a warm-up.
Prints milliseconds and GFLOP/s per layer, and the ideal time of the whole model at ``--peak`` GFLOP/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import architecture as arch
from jaxvae import layers


def model_layers() -> list[tuple]:
    """``(name, transposed?, (input size, C_in), C_out, stride, padding)`` of each convolution, from
    ``jaxvae.architecture``'s table: the encoder from the 28x28 image, the decoder from the 7x7 feature map."""
    rows = []
    for convs, size in ((arch.ENCODER, arch.IMAGE_SHAPE[0]), (arch.DECODER, arch.FEATURE_MAP[0])):
        for layer in convs:
            transposed = layer.kind == "conv_transpose"
            k, s, p = arch.KERNEL_SIZE, layer.stride, layer.padding
            rows.append((layer.name, transposed, (size, layer.in_features), layer.features, s, p))
            size = (size - 1) * s - 2 * p + k if transposed else (size + 2 * p - k) // s + 1
    return rows


def convolution(transposed: bool, impl: str, stride: int, padding: int, compute_dtype: str):
    """``f(x, kernel)``: the layer's convolution as the model runs it in ``compute_dtype``."""
    table = layers._CONV_TRANSPOSE if transposed else layers._CONV

    def op(x, kernel, *out_dtype):
        return table[impl](x, kernel, stride, padding, jax.lax.Precision.HIGHEST, *out_dtype)

    return lambda x, kernel: layers.in_compute_dtype(op, x, kernel, compute_dtype)


def median_ms(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def layer_flops(transposed: bool, size: int, c_in: int, c_out: int, out_size: int, batch: int) -> float:
    """Forward multiply-adds x 2 of the useful work (a transposed conv scatters from each input pixel)."""
    positions = size * size if transposed else out_size * out_size
    return 2.0 * batch * positions * 9 * c_in * c_out


def profile(batch: int, impls: list[str], repeats: int, compute_dtype: str) -> list[tuple]:
    rows = []
    for name, transposed, (size, c_in), c_out, stride, padding in model_layers():
        x = jnp.asarray(np.random.default_rng(0).random((batch, size, size, c_in), np.float32))
        k = jnp.asarray(np.random.default_rng(1).random((3, 3, c_in, c_out), np.float32))
        for impl in impls:
            f = convolution(transposed, impl, stride, padding, compute_dtype)
            fwd = jax.jit(f)
            y = fwd(x, k)
            dy = jnp.ones_like(y)
            first = name == arch.ENCODER[0].name  # its input needs no gradient
            bwd = jax.jit(
                lambda x, k, dy, f=f, first=first: jax.vjp(
                    (lambda k: f(x, k)) if first else f, *((k,) if first else (x, k))
                )[1](dy)
            )
            flops = layer_flops(transposed, size, c_in, c_out, y.shape[1], batch)
            t_fwd, t_bwd = median_ms(fwd, x, k, repeats=repeats), median_ms(bwd, x, k, dy, repeats=repeats)
            rows.append((name, impl, t_fwd, t_bwd, flops * (2 if first else 3) / (t_fwd + t_bwd) / 1e6))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--impls", default=",".join(layers.CONV_IMPLS))
    p.add_argument("--compute-dtype", default="float32", choices=layers.COMPUTE_DTYPES)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--peak", type=float, default=180.0, help="the machine's sgemm GFLOP/s, for the ideal time")
    args = p.parse_args()
    impls = args.impls.split(",")
    rows = profile(args.batch, impls, args.repeats, args.compute_dtype)
    print(f"batch {args.batch}, compute dtype {args.compute_dtype}, device {jax.devices()[0]}")
    print(f"{'layer':<10} {'impl':<7} {'fwd ms':>8} {'bwd ms':>8} {'GFLOP/s':>8}")
    for name, impl, t_fwd, t_bwd, rate in rows:
        print(f"{name:<10} {impl:<7} {t_fwd:8.2f} {t_bwd:8.2f} {rate:8.1f}")
    for impl in impls:
        total = sum(r[2] + r[3] for r in rows if r[1] == impl)
        print(f"total {impl}: {total:.1f} ms per {args.batch} images")
    print(
        f"ideal at {args.peak:.0f} GFLOP/s (86 MFLOP per training image): "
        f"{86e6 * args.batch / args.peak / 1e9 * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
