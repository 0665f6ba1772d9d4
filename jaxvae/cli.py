"""``jaxvae`` command line: parses flags and calls library functions; bad input is one line and exit 2.

``jaxvae train``'s flags are generated from ``RunConfig``'s fields (``jaxvae.run.config``), where each default,
help text and check is written once; ``--help`` shows every default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import jax

from jaxvae.errors import UserError
from jaxvae.layers import CONV_IMPLS
from jaxvae.parity.check import parity_check
from jaxvae.run import bench, commands, distributed
from jaxvae.run.config import PER_MEMBER, add_config_flags, config_from_args
from jaxvae.run.files import ENSEMBLE, new_run_dir
from jaxvae.run.members import member_grid
from jaxvae.run.training import train, train_ensemble


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the VAE (the seed notebook's settings by default), or an ensemble: lists for --seed, --lr, "
        "--reconstruction-weight train every combination side by side in one jitted step",
    )
    add_config_flags(p, lists=True)
    p.add_argument("--out", type=Path, default=None, help="run folder (default: a new folder under runs/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument(
        "--member-group",
        type=int,
        default=0,
        help="an ensemble's members vmapped together, the groups one after another in the same jitted step "
        "(default: 0, the backend's choice: 1 on CPU, all members elsewhere)",
    )
    g = p.add_argument_group("several processes (jax.distributed; every process gets the same flags but --process-id)")
    g.add_argument(
        "--coordinator",
        default=None,
        help="HOST:PORT of process 0's coordinator, e.g. 127.0.0.1:12355 (default: one process)",
    )
    g.add_argument("--num-processes", type=int, default=None, help="processes in the run (default: one)")
    g.add_argument("--process-id", type=int, default=None, help="this process's index, 0 .. N-1 (default: one process)")
    g.add_argument(
        "--coordinator-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the coordinator and the other processes (default: 60)",
    )


def _add_run_commands(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="test-split loss terms, ELBO and IWAE log p(x) of a run's latest checkpoint, as JSON"
    )
    p.add_argument("--run", type=Path, required=True, help="a run folder written by jaxvae train")
    p.add_argument(
        "--iw-samples",
        type=int,
        default=commands.DEFAULT_IW_SAMPLES,
        help=f"importance samples per image for log p(x) (default: {commands.DEFAULT_IW_SAMPLES}; the IWAE paper uses "
        "5000)",
    )
    p.add_argument("--test-examples", type=int, default=None, help="the first N test images only (default: the run's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the importance samples (default: 0)")
    p = sub.add_parser("sample", help="a PNG of images decoded from the prior")
    p.add_argument("--run", type=Path, required=True, help="a run folder written by jaxvae train")
    p.add_argument("-n", type=int, default=64, help="how many images (default: 64)")
    p.add_argument("--out", type=Path, required=True, help="the PNG file to write (not overwritten)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent draws (default: 0)")
    p = sub.add_parser("export", help="write a run's weights as a torch state dict for torch_ref / the seed notebook")
    p.add_argument("--run", type=Path, required=True, help="a run folder written by jaxvae train")
    p.add_argument("--to", type=Path, required=True, help="the .pt file to write (not overwritten)")


def _add_torch_commands(sub) -> None:
    p = sub.add_parser("parity", help="compare jaxvae with torch_ref layer by layer, loss and gradients")
    p.add_argument(
        "--torch-weights",
        type=Path,
        default=None,
        help="a state dict saved by the seed notebook or torch_ref (default: torch_ref's initialisation at --seed)",
    )
    p.add_argument("--latent-dim", type=int, default=2, help="latent size of the random weights (default: 2)")
    p.add_argument("--batch-size", type=int, default=32, help="real test digits compared (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, digits and noise (default: 0)")
    p.add_argument(
        "--conv-impl",
        choices=["all", *CONV_IMPLS],
        default="all",
        help="the implementations compared (default: all)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    p.add_argument(
        "--likelihood",
        choices=["gaussian", "bernoulli"],
        default="gaussian",
        help="the loss whose value and gradients are compared (default: gaussian)",
    )
    p = sub.add_parser("bench", help="training throughput of jaxvae against torch_ref, side by side")
    p.add_argument("--batch-sizes", default="32,256", help="comma-separated batch sizes (default: 32,256)")
    p.add_argument(
        "--members",
        default="1",
        help="comma-separated ensemble sizes K (e.g. 1,4,16): K members in one jitted step against K single runs, K "
        "eager torch_ref runs and torch.func's ensemble of K, in member-images per second (default: 1)",
    )
    p.add_argument(
        "--images",
        type=int,
        default=4096,
        help="training images per member per timed repetition, in whole chunks, at least one (default: 4096)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions of each runner, alternating (default: 5)")
    add_config_flags(p, bench.BENCH_FLAGS)
    p.add_argument("--member-group", type=int, default=0, help="members vmapped together, as jaxvae train takes it")
    p.add_argument("--no-torch", action="store_true", help="time jaxvae alone")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxvae", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    _add_run_commands(sub)
    _add_torch_commands(sub)
    return parser


def _train(args) -> int:
    lists = {name: getattr(args, name) for name in PER_MEMBER}
    members = member_grid(config_from_args(args, **{name: values[0] for name, values in lists.items()}), lists)
    if args.resume and args.out is None:
        raise UserError("--resume needs --out: the run folder to continue")
    several = distributed.check_flags(args.coordinator, args.num_processes, args.process_id)
    if several and args.out is None:
        raise UserError("several processes need one --out that all of them share")
    if several:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id, args.coordinator_timeout)
    out = args.out or new_run_dir()
    if len(members) == 1 and not (args.resume and (out / ENSEMBLE).is_file()):
        summary = train(members[0].config, out, resume=args.resume)
        done = f"test loss {summary['final_test']['loss']:.4f}, {summary['images_per_second'] or 0:.0f} images/s"
    else:
        summary = train_ensemble(members, lists, out, args.resume, args.member_group)
        done = f"{len(members)} members, {summary['member_images_per_second'] or 0:.0f} member-images/s"
    if distributed.is_primary():
        for member in summary.get("members", []):
            print(f"{member['name']}: test loss {member['final_test']['loss']:.4f}")
        runs = f", each member's run in {out / 'members'}" if "members" in summary else ""
        print(f"done: {out} ({done}); plots in {out / 'plots'}{runs}")
    return 0


def _run_command(args) -> int:
    if args.command == "train":
        return _train(args)
    if args.command == "evaluate":
        print(json.dumps(commands.evaluate_run(args.run, args.iw_samples, args.test_examples, args.seed)))
    elif args.command == "sample":
        print(commands.sample_run(args.run, args.n, args.out, args.seed))
    elif args.command == "export":
        print(commands.export_run(args.run, args.to))
    elif args.command == "parity":
        impls = list(CONV_IMPLS) if args.conv_impl == "all" else [args.conv_impl]
        text, ok = parity_check(
            args.torch_weights, args.latent_dim, args.batch_size, args.seed, impls, args.json, args.likelihood
        )
        print(text)
        return 0 if ok else 1
    else:
        return bench.run_from_args(args)
    return 0


def _dispatch(args) -> int:
    try:
        return _run_command(args)
    except ModuleNotFoundError as exc:
        if exc.name not in ("torch", "torch_ref"):
            raise
        raise UserError(
            f"{args.command} needs torch, which is not installed here: pip install torch==2.13.0 (a CPU "
            "build; see the README for other machines)"
        ) from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())  # one line, whatever a library put into the message


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
        if not jax.distributed.is_initialized():
            raise
        out = getattr(args, "out", None)
        print(
            f"jaxvae {args.command}: error: process {args.process_id} of {args.num_processes} stopped: another process "
            f"was lost or failed ({type(exc).__name__}: {_one_line(exc)[:300]}); the last checkpoint in {out} is "
            "complete, continue with --resume once every process runs",
            file=sys.stderr,
        )
        status = 1
    if jax.distributed.is_initialized():
        # JAX's exit waits at a barrier for every process and aborts with a stack trace if one is gone
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
