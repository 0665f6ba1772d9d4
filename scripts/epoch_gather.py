"""Where should an epoch's batches be gathered: on the device from images kept there, or on the host and uploaded?

    python scripts/epoch_gather.py --dataset idx:/usr/share/datasets/fashion-mnist --batch-size 256 --epochs 3

Both ways produce the same array (``Trainer.epoch_data``): ``device`` keeps the training images on the devices
and gathers each epoch's shuffled batches there with a jitted gather (what ``jaxvae train`` does in one
process); ``host`` gathers them with numpy and uploads them, each process its own devices' rows (what it does
over several processes). For each, in one process and alternating epoch by epoch: the seconds to compile the
run's functions (the gather's included), then per epoch the seconds to gather the batches (until they are on
the device) and to train on them. Prints a table and writes ``--out``/summary.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np
from jaxvae.run.trainer import RunKeys, RunSetup, Trainer

from jaxvae.data import load_dataset
from jaxvae.run.config import RunConfig

MODES = ("device", "host")


def build(mode: str, config: RunConfig, dataset) -> dict:
    setup = RunSetup.build(config)
    keys = RunKeys.from_seed(config.seed)
    state = setup.fresh_state(keys.init)
    images = setup.place_train(dataset.train.images) if mode == "device" else np.asarray(dataset.train.images)
    test = setup.place_test(dataset.test.images[:1])
    trainer = Trainer.compile(setup, len(dataset.train), state, images, test, keys)
    return {"trainer": trainer, "state": state, "images": images, "keys": keys, "gather": [], "train": []}


def run_epoch(run: dict, epoch: int) -> None:
    trainer, keys = run["trainer"], run["keys"]
    start = time.perf_counter()
    batches = jax.block_until_ready(trainer.epoch_data(run["images"], keys.data, epoch))
    run["gather"].append(time.perf_counter() - start)
    start = time.perf_counter()
    state = run["state"]
    for first in range(0, trainer.steps_per_epoch, trainer.chunk_steps):
        state, metrics = trainer.run_chunk(state, batches, first, keys)
    jax.block_until_ready(metrics)
    run["state"] = state
    run["train"].append(time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each mode, alternating")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    config = RunConfig(dataset=args.dataset, batch_size=args.batch_size)
    runs = {mode: build(mode, config, dataset) for mode in MODES}
    for epoch in range(1, args.epochs + 1):
        for mode in MODES:
            run_epoch(runs[mode], epoch)
    rows = {
        mode: {
            "compile_seconds": run["trainer"].compile_seconds,
            "gather_seconds_median": statistics.median(run["gather"]),
            "train_seconds_median": statistics.median(run["train"]),
            "gather_seconds": run["gather"],
            "train_seconds": run["train"],
        }
        for mode, run in runs.items()
    }
    print(f"{len(dataset.train)} training images of {args.dataset}, batch {args.batch_size}, {jax.devices()[0]}")
    print(f"{'mode':<8} {'compile s':>10} {'gather s/epoch':>15} {'train s/epoch':>14}")
    for mode, r in rows.items():
        print(
            f"{mode:<8} {r['compile_seconds']:10.2f} {r['gather_seconds_median']:15.3f} "
            f"{r['train_seconds_median']:14.2f}"
        )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        summary = {
            "dataset": args.dataset,
            "train_images": len(dataset.train),
            "batch_size": args.batch_size,
            "device": str(jax.devices()[0]),
            "modes": rows,
        }
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
