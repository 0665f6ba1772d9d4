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

from jaxvae.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_train(sub) -> None:
    from jaxvae.run.config import add_config_flags

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
    from jaxvae.run.commands import DEFAULT_IW_SAMPLES

    p = sub.add_parser(
        "evaluate", help="test-split loss terms, ELBO and IWAE log p(x) of a run's latest checkpoint, as JSON"
    )
    p.add_argument("--run", type=Path, required=True, help="a run folder written by jaxvae train")
    p.add_argument(
        "--iw-samples",
        type=int,
        default=DEFAULT_IW_SAMPLES,
        help=f"importance samples per image for log p(x) (default: {DEFAULT_IW_SAMPLES}; the IWAE paper uses 5000)",
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
    from jaxvae.layers import CONV_IMPLS
    from jaxvae.run.config import add_config_flags

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
        "--images",
        type=int,
        default=4096,
        help="training images per timed repetition, in whole chunks, at least one (default: 4096)",
    )
    p.add_argument(
        "--repeats", type=int, default=5, help="timed repetitions of each framework, alternating (default: 5)"
    )
    add_config_flags(p, ["dataset", "data_dir", "conv_impl", "compute_dtype", "micro_batch", "chunk_steps", "devices"])
    p.add_argument("--no-torch", action="store_true", help="time jaxvae alone")
    p.add_argument(
        "--members",
        default=None,
        help="comma-separated ensemble sizes K (e.g. 1,4,16): time K members in one vmapped step against K single "
        "runs, torch.func's ensemble of K and K eager torch_ref runs, in member-images per second (default: off)",
    )
    p.add_argument(
        "--member-group",
        type=int,
        default=0,
        help="with --members: members vmapped together, as jaxvae train takes it (default: 0, the backend's choice)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxvae", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    _add_run_commands(sub)
    _add_torch_commands(sub)
    return parser


def _train(args) -> int:
    from jaxvae.run import distributed
    from jaxvae.run.config import PER_MEMBER, config_from_args
    from jaxvae.run.files import ENSEMBLE, new_run_dir
    from jaxvae.run.members import member_grid

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
    if len(members) > 1 or (args.resume and (out / ENSEMBLE).is_file()):
        return _train_ensemble(members, lists, out, args.resume, args.member_group)
    from jaxvae.run.training import train

    summary = train(members[0].config, out, resume=args.resume)
    if distributed.is_primary():
        test = summary["final_test"]
        print(
            f"done: {out} (test loss {test['loss']:.4f}, {summary['images_per_second'] or 0:.0f} images/s); "
            f"plots in {out / 'plots'}"
        )
    return 0


def _train_ensemble(members, lists, out: Path, resume: bool, member_group: int) -> int:
    from jaxvae.run import distributed
    from jaxvae.run.ensemble_training import train_ensemble

    summary = train_ensemble(members, lists, out, resume, member_group)
    if distributed.is_primary():
        for member in summary["members"]:
            print(f"{member['name']}: test loss {member['final_test']['loss']:.4f}")
        print(
            f"done: {out} ({len(members)} members, {summary['member_images_per_second'] or 0:.0f} member-images/s); "
            f"plots in {out / 'plots'}, each member's run in {out / 'members'}"
        )
    return 0


def _parity(args) -> int:
    from jaxvae.layers import CONV_IMPLS
    from jaxvae.parity.check import parity_check

    impls = list(CONV_IMPLS) if args.conv_impl == "all" else [args.conv_impl]
    text, ok = parity_check(
        args.torch_weights, args.latent_dim, args.batch_size, args.seed, impls, args.json, args.likelihood
    )
    print(text)
    return 0 if ok else 1


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


def _run_command(args) -> int:
    from jaxvae.run import commands

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
        return _parity(args)
    if args.members:
        from jaxvae.parity.bench_ensemble import run_members_from_args

        return run_members_from_args(args)
    from jaxvae.parity.bench import run_from_args

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
        print(
            f"jaxvae {args.command}: error: process {args.process_id} of {args.num_processes} stopped: another process "
            f"was lost or failed ({type(exc).__name__}: {_one_line(exc)[:300]}); "
            f"the last checkpoint in {out}/checkpoints "
            "is complete, continue with --resume once every process runs",
            file=sys.stderr,
        )
        status = 1
    if "jax" in sys.modules and _several_processes():
        # JAX's exit waits at a barrier for every process and aborts with a stack trace if one is gone
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
