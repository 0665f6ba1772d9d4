"""The epoch check: the wall time of one ``jaxvae train`` epoch against one torch_ref epoch.

    python scripts/epoch_time.py --dataset idx:/usr/share/datasets/fashion-mnist --out /tmp/epoch_time

For each batch size, ``jaxvae train`` runs as a fresh process for 1 and for 2 epochs on the first
``--train-examples`` images; the difference of the two wall times is one epoch with start-up and compilation
cancelled out (the per-epoch evaluation and checkpoint stay in, as in any run). torch_ref trains one epoch of
the same images in eager PyTorch (its own shuffle, ``torch_ref.train.train_vae``), timed alone, with no
evaluation. Prints seconds per epoch and the ratio torch/jaxvae (> 1: jaxvae is faster), also from the
seconds the runs spent in training steps and in the test evaluation (their ``summary.json``): the wall-time
difference carries the start-up and report time of two processes, which varied by several seconds here.
The whole test split is evaluated each epoch, as ``jaxvae train`` does by default; ``--test-examples``
bounds it. Writes ``summary.json`` and ``epoch_seconds.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from jaxvae.data import load_dataset
from jaxvae.run import files as run_files
from torch_ref import VAE as TorchVAE
from torch_ref.train import shuffled_batches, train_vae


def jaxvae_wall_seconds(args, batch: int, epochs: int, out: Path) -> float:
    cmd = [
        sys.executable,
        "-c",
        "import sys; from jaxvae.cli import main; sys.exit(main())",
        "train",
        "--dataset",
        args.dataset,
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch),
        "--train-examples",
        str(args.train_examples),
        "--out",
        str(out),
    ]
    if args.test_examples:
        cmd += ["--test-examples", str(args.test_examples)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _run_seconds(run: Path, key: str) -> float:
    """``train_seconds`` or ``eval_seconds`` of a run (its ``summary.json``), free of start-up and report noise."""
    return run_files.read_json(run / "summary.json", "run summary")[key]


def torch_epoch_seconds(images: np.ndarray, batch: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = TorchVAE(2)
    data = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # (N, 1, 28, 28)
    start = time.perf_counter()
    train_vae(model, shuffled_batches(data, batch))
    return time.perf_counter() - start


def measure_batch_size(args, images: np.ndarray, batch: int) -> dict:
    one = jaxvae_wall_seconds(args, batch, 1, args.out / f"b{batch}_1epoch")
    two = jaxvae_wall_seconds(args, batch, 2, args.out / f"b{batch}_2epochs")
    torch_s = torch_epoch_seconds(images, batch, seed=0)
    steps_s, eval_s = (
        _run_seconds(args.out / f"b{batch}_2epochs", k) - _run_seconds(args.out / f"b{batch}_1epoch", k)
        for k in ("train_seconds", "eval_seconds")
    )
    row = {
        "batch_size": batch,
        "jaxvae_1_epoch_wall_s": one,
        "jaxvae_2_epochs_wall_s": two,
        "jaxvae_epoch_s": two - one,
        "jaxvae_epoch_steps_s": steps_s,
        "jaxvae_epoch_eval_s": eval_s,
        "torch_epoch_s": torch_s,
        "ratio_torch_over_jaxvae": torch_s / (two - one),
        "ratio_torch_over_jaxvae_steps": torch_s / steps_s,
    }
    print(
        f"batch {batch}: jaxvae {two - one:.2f} s/epoch by wall time ({one:.1f} s for 1, {two:.1f} s for 2; "
        f"{steps_s:.2f} s in training steps, {eval_s:.2f} s evaluating), torch_ref {torch_s:.2f} s/epoch, "
        f"ratio {row['ratio_torch_over_jaxvae']:.2f} ({row['ratio_torch_over_jaxvae_steps']:.2f} by steps)",
        flush=True,
    )
    return row


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.arange(len(results))
    ax.bar(x - 0.2, [r["jaxvae_epoch_s"] for r in results], 0.4, label="jaxvae train")
    ax.bar(x + 0.2, [r["torch_epoch_s"] for r in results], 0.4, label="torch_ref")
    ax.set_xticks(x, [f"batch {r['batch_size']}\n{r['ratio_torch_over_jaxvae']:.2f}x" for r in results])
    ax.set_ylabel("seconds per epoch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--train-examples", type=int, default=10_000)
    p.add_argument("--test-examples", type=int, default=None, help="default: the whole test split")
    p.add_argument("--batch-sizes", default="32,256")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.out.exists():
        p.error(f"--out {args.out} exists; choose a new folder")
    images = load_dataset(args.dataset, args.data_dir).train.images
    if len(images) < args.train_examples:
        p.error(f"{args.dataset} has {len(images)} training images; pass --train-examples {len(images)} or fewer")
    images = images[: args.train_examples]
    args.out.mkdir(parents=True)

    results = [measure_batch_size(args, images, int(b)) for b in args.batch_sizes.split(",")]
    run_files.write_json(
        args.out / "summary.json",
        {
            "dataset": args.dataset,
            "train_images": len(images),
            "torch_threads": torch.get_num_threads(),
            "results": results,
        },
    )
    plot(results, args.out / "epoch_seconds.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
