"""``jaxvae`` command line: parses flags and calls library functions; bad input is one line and exit 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from jaxvae.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train the VAE (the seed notebook's settings by default)")
    p.add_argument("--dataset", default="mnist5k", help="mnist5k (embedded, default), mnist, fashion_mnist, or idx:DIR")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--reconstruction-weight", type=float, default=1.0)
    p.add_argument("--out", type=Path, default=None, help="run folder (default: a new folder under runs/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--train-examples", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--test-examples", type=int, default=None, help="evaluate on the first N test images only")
    p.add_argument("--data-dir", default=None, help="tensorflow-datasets data dir (for mnist, fashion_mnist)")
    p.add_argument("--conv-impl", default="auto", help="auto (default), xla or matmul: see jaxvae/layers.py")
    p.add_argument("--chunk-steps", type=int, default=0, help="training steps per dispatch (0: automatic)")
    p.add_argument("--micro-batch", type=int, default=0, help="compute each step's gradient in micro-batches of N (0: automatic)")
    p.add_argument("--eval-every", type=int, default=1, help="evaluate the test split after every N-th epoch and the last (0: the last only)")
    p.add_argument("--devices", type=int, default=0, help="data parallel over the first N visible devices (0: all)")
    p.add_argument("--likelihood", default="gaussian", help="gaussian (default: the seed's summed squared error) or bernoulli "
                   "(binary cross-entropy on the decoder's logits)")
    p.add_argument("--binarize", default="none", help="none (default), threshold (pixel > 0.5) or sample (a fresh Bernoulli "
                   "draw of each training image every epoch; the test split drawn once from --seed)")
    g = p.add_argument_group("several processes (jax.distributed; every process gets the same flags but --process-id)")
    g.add_argument("--coordinator", default=None, help="HOST:PORT of process 0's coordinator, e.g. 127.0.0.1:12355")
    g.add_argument("--num-processes", type=int, default=None)
    g.add_argument("--process-id", type=int, default=None)
    g.add_argument("--coordinator-timeout", type=float, default=60.0, help="seconds to wait for the coordinator and the other processes")


def _add_run_commands(sub) -> None:
    from jaxvae.commands import DEFAULT_IW_SAMPLES

    p = sub.add_parser("evaluate", help="test-split loss terms, ELBO and IWAE log p(x) of a run's latest checkpoint, as JSON")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--iw-samples", type=int, default=DEFAULT_IW_SAMPLES,
                   help=f"importance samples per image for log p(x) (default {DEFAULT_IW_SAMPLES}; the IWAE paper uses 5000)")
    p.add_argument("--test-examples", type=int, default=None, help="the first N test images only")
    p.add_argument("--seed", type=int, default=0, help="seed of the importance samples")
    p = sub.add_parser("sample", help="a PNG of images decoded from the prior")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("-n", type=int, default=64)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("export", help="write a run's weights as a torch state dict for torch_ref / the seed notebook")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--to", type=Path, required=True)
    p = sub.add_parser("parity", help="compare jaxvae with torch_ref layer by layer, loss and gradients")
    p.add_argument("--torch-weights", type=Path, default=None, help="a state dict saved by the seed notebook or torch_ref")
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--conv-impl", choices=["all", "xla", "matmul"], default="all")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    p.add_argument("--likelihood", choices=["gaussian", "bernoulli"], default="gaussian", help="the loss whose value and gradients are compared")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxvae", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    _add_run_commands(sub)
    from jaxvae.bench import add_arguments as add_bench

    add_bench(sub.add_parser("bench", help="training throughput of jaxvae against torch_ref, side by side"))
    return parser


def _train(args) -> int:
    from jaxvae import distributed
    from jaxvae.config import RunConfig
    from jaxvae.run_files import new_run_dir

    config = RunConfig(args.dataset, args.epochs, args.batch_size, args.lr, args.seed, args.latent_dim, args.reconstruction_weight,
                       args.conv_impl, args.train_examples, args.test_examples, args.data_dir, args.chunk_steps, args.micro_batch,
                       args.eval_every, args.devices, args.likelihood, args.binarize)
    if args.resume and args.out is None:
        raise UserError("--resume needs --out: the run folder to continue")
    several = distributed.check_flags(args.coordinator, args.num_processes, args.process_id)
    if several and args.out is None:
        raise UserError("several processes need one --out that all of them share")
    if several:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id, args.coordinator_timeout)
    out = args.out or new_run_dir()
    from jaxvae.training import train

    summary = train(config, out, resume=args.resume)
    if distributed.is_primary():
        test = summary["final_test"]
        print(f"done: {out} (test loss {test['loss']:.4f}, {summary['images_per_second'] or 0:.0f} images/s); plots in {out / 'plots'}")
    return 0


def _dispatch(args) -> int:
    from jaxvae import commands

    if args.command == "train":
        return _train(args)
    if args.command == "evaluate":
        print(json.dumps(commands.evaluate_run(args.run, args.iw_samples, args.test_examples, args.seed)))
        return 0
    if args.command == "sample":
        print(commands.sample_run(args.run, args.n, args.out, args.seed))
        return 0
    if args.command == "export":
        print(commands.export_run(args.run, args.to))
        return 0
    if args.command == "parity":
        impls = ["xla", "matmul"] if args.conv_impl == "all" else [args.conv_impl]
        text, ok = commands.parity_check(args.torch_weights, args.latent_dim, args.batch_size, args.seed, impls, args.json,
                                         args.likelihood)
        print(text)
        return 0 if ok else 1
    from jaxvae.bench import run_from_args

    return run_from_args(args)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())  # one line, whatever a library put into the message


def _several_processes() -> bool:
    import jax

    return jax.process_count() > 1


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as exc:
        print(f"jaxvae {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print(f"jaxvae {args.command}: interrupted", file=sys.stderr)
        status = 130
    except Exception as exc:  # noqa: BLE001 - only a multi-process run turns this into one line; see below
        if not ("jax" in sys.modules and _several_processes()):
            raise
        out = getattr(args, "out", None)
        print(f"jaxvae {args.command}: error: process {args.process_id} of {args.num_processes} stopped: another process was lost "
              f"or failed ({type(exc).__name__}: {_one_line(exc)[:300]}); the last checkpoint in {out}/checkpoints is complete, "
              "continue with --resume once every process runs", file=sys.stderr)
        status = 1
    if "jax" in sys.modules and _several_processes():
        # JAX's exit waits at a barrier for every process and aborts with a stack trace if one is gone
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
