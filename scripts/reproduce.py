"""One epoch of jaxvae and of torch_ref on the same data, compared with the reference figures (docs/benchmarks.md).

    python scripts/reproduce.py --dataset idx:/path/to/mnist --batch-size 256 --epochs 1

Both start from the same weights (torch's default initialisation, drawn once) and each shuffles with its own
generator, as two independent runs would. Prints, for each, the first batch's loss and the mean loss over the
last 30 batches of each epoch, plus the test loss; writes everything to ``--out`` with a ``summary.json`` and a
PNG of both loss curves. On full MNIST at batch 256 the reference's epoch-1 figures are a first-batch loss of
about 183.6 and a mean of 47.4-47.8 over the last 30 batches.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from jaxvae.convert import params_from_torch
from jaxvae.data import load_dataset
from jaxvae.run import files as run_files
from jaxvae.run import plots
from jaxvae.run.config import RunConfig
from jaxvae.run.training import train
from torch_ref import VAE as TorchVAE
from torch_ref.train import shuffled_batches, train_vae, vae_loss


def torch_epochs(
    state_dict, images: np.ndarray, test_images: np.ndarray, batch: int, epochs: int, lr: float, seed: int
):
    torch.manual_seed(seed)
    model = TorchVAE(state_dict["z_mean.weight"].shape[0])
    model.load_state_dict(state_dict)
    data = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, start = [], time.perf_counter()
    for epoch in range(epochs):
        losses += [h[0] for h in train_vae(model, shuffled_batches(data, batch), optimizer=optimizer)]
        print(f"torch_ref epoch {epoch + 1}: mean of last 30 batches {np.mean(losses[-30:]):.3f}", file=sys.stderr)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(test_images.transpose(0, 3, 1, 2)))
        _, mu, lv, dec = model(x)
        test = float(vae_loss(x, dec, mu, lv)[0])
    return losses, test, seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--train-examples", type=int, default=None)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.out.exists():
        p.error(f"--out {args.out} exists; choose a new folder")

    torch.manual_seed(args.seed)
    start_weights = TorchVAE(2).state_dict()
    config = RunConfig(
        args.dataset,
        args.epochs,
        args.batch_size,
        args.lr,
        args.seed,
        2,
        1.0,
        "auto",
        args.train_examples,
        None,
        args.data_dir,
    )
    summary = train(config, args.out / "jaxvae", initial_params=params_from_torch(start_weights)["params"])
    jax_records = run_files.MetricsLog(args.out / "jaxvae" / run_files.METRICS).read()
    jax_losses = [r["loss"] for r in jax_records if "split" not in r]

    dataset = load_dataset(args.dataset, args.data_dir)
    train_images = dataset.train.images[: args.train_examples] if args.train_examples else dataset.train.images
    torch_losses, torch_test, torch_seconds = torch_epochs(
        start_weights, train_images, dataset.test.images, args.batch_size, args.epochs, args.lr, args.seed
    )

    steps = len(jax_losses) // args.epochs
    result = {
        "dataset": dataset.source,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "train_images": len(train_images),
        "jaxvae": {
            "first_batch_loss": jax_losses[0],
            "last30_mean_per_epoch": [
                float(np.mean(jax_losses[(e + 1) * steps - 30 : (e + 1) * steps])) for e in range(args.epochs)
            ],
            "test_loss": summary["final_test"]["loss"],
            "train_seconds": summary["train_seconds"],
        },
        "torch_ref": {
            "first_batch_loss": torch_losses[0],
            "last30_mean_per_epoch": [
                float(np.mean(torch_losses[(e + 1) * steps - 30 : (e + 1) * steps])) for e in range(args.epochs)
            ],
            "test_loss": torch_test,
            "train_seconds": torch_seconds,
        },
    }
    run_files.write_json(args.out / "summary.json", result)
    plots.training_loss(jax_losses, steps, args.out / "jaxvae_loss.png")
    plots.training_loss(torch_losses, steps, args.out / "torch_ref_loss.png")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
