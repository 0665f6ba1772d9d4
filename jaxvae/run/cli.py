"""``jaxvae`` command line: parses flags and calls library functions; bad input is one line and exit 2. The command
starts in ``jaxvae.__main__``, which loads this module.

``jaxvae train``'s flags are generated from ``RunConfig``'s fields (``jaxvae.run.config``), where each default,
help text and check is written once; ``--help`` shows every default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import textwrap
from pathlib import Path

import jax

import jaxvae
from jaxvae.errors import STOP_SIGNALS, UserError
from jaxvae.layers import CONV_IMPLS
from jaxvae.likelihoods import LIKELIHOODS
from jaxvae.parity.check import parity_check
from jaxvae.run import bench, commands, distributed
from jaxvae.run.config import PER_MEMBER, add_config_flags, config_from_args
from jaxvae.run.files import ENSEMBLE, new_run_dir
from jaxvae.run.members import member_grid
from jaxvae.run.training import resume_hint, train_members


class _Help(argparse.HelpFormatter):
    def _split_lines(self, text, width):  # never at a hyphen: a flag's name stays whole, to be copied
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"formatter_class": _Help, **kwargs})

    def error(self, message):  # one line instead of usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # a command's unknown flag is named by that command
        known, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return known, extra


def _path(text: str) -> Path:
    """A path flag's value; an empty one (an unset shell variable, quoted) is refused, not read as ``.``."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path; name a file or folder")
    return Path(text)


def _add(parser, flag: str, kind, default, help: str, shown=None, **more) -> None:
    """One flag of type ``kind`` (``bool``: a switch); its help ends in its default (or ``shown``), unless required."""
    if kind is bool:
        parser.add_argument(flag, action="store_true", help=help)
    else:
        suffix = "" if more.get("required") else f" (default: {default if shown is None else shown})"
        parser.add_argument(flag, type=kind, default=default, help=help + suffix, **more)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxvae", description=jaxvae.__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"jaxvae {jaxvae.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser(
        "train",
        help="train the VAE (the seed notebook's settings by default), or an ensemble: lists for --seed, --lr, "
        "--reconstruction-weight train every combination in one jitted step",
    )
    add_config_flags(p, lists=True)
    _add(p, "--out", _path, None, "run folder", "a new folder under runs/")
    _add(p, "--resume", bool, False, "continue the run in --out from its last checkpoint")
    together = "an ensemble's members vmapped together, the groups one after another in one jitted step; vmapped"
    _add(p, "--member-group", int, 0, f"{together} members sum in another order", "0: 1 on CPU, all elsewhere")
    g = p.add_argument_group("several processes (jax.distributed; every process gets the same flags but --process-id)")
    _add(g, "--coordinator", str, None, "HOST:PORT of process 0's coordinator, e.g. 127.0.0.1:12355", "one process")
    _add(g, "--num-processes", int, None, "processes in the run", "one")
    _add(g, "--process-id", int, None, "this process's index, 0 .. N-1", "one process")
    _add(g, "--coordinator-timeout", float, 60.0, "seconds to wait for the coordinator and the other processes")
    p = sub.add_parser("evaluate", help="test-split loss terms, ELBO and IWAE log p(x) of a run's latest checkpoint")
    _add(p, "--run", _path, None, "a run folder (or an ensemble's) written by jaxvae train", required=True)
    _add(p, "--iw-samples", int, commands.DEFAULT_IW_SAMPLES, "importance samples per image for log p(x) (IWAE: 5000)")
    _add(p, "--test-examples", int, None, "the first N test images only", "the run's")
    _add(p, "--seed", int, 0, "seed of the importance samples")
    p = sub.add_parser("sample", help="a PNG of images decoded from the prior")
    _add(p, "--run", _path, None, "a run folder written by jaxvae train", required=True)
    _add(p, "-n", int, 64, "how many images")
    _add(p, "--out", _path, None, "the PNG file to write (not overwritten)", required=True)
    _add(p, "--seed", int, 0, "seed of the latent draws")
    p = sub.add_parser("export", help="write a run's weights as a torch state dict for torch_ref / the seed notebook")
    _add(p, "--run", _path, None, "a run folder written by jaxvae train", required=True)
    _add(p, "--to", _path, None, "the .pt file to write (not overwritten)", required=True)
    p = sub.add_parser("parity", help="compare jaxvae with torch_ref layer by layer, loss and gradients")
    _add(p, "--torch-weights", _path, None, "a state dict saved by the seed notebook or torch_ref", "torch_ref's init")
    _add(p, "--latent-dim", int, 2, "latent size of the random weights")
    _add(p, "--batch-size", int, 32, "real test digits compared")
    _add(p, "--seed", int, 0, "seed of the weights, digits and noise")
    _add(p, "--conv-impl", str, "all", "the implementations compared", choices=["all", *CONV_IMPLS])
    _add(p, "--likelihood", str, "gaussian", "the loss whose value and gradients are compared", choices=[*LIKELIHOODS])
    add_config_flags(p, ["objective", "iw_train_samples"])
    _add(p, "--json", bool, False, "print one JSON object instead of the tables")
    p = sub.add_parser("bench", help="training throughput of jaxvae against torch_ref, side by side")
    _add(p, "--batch-sizes", str, "32,256", "comma-separated batch sizes")
    against = "against K single runs, K eager torch_ref runs and torch.func's K, in member-images per second"
    _add(p, "--members", str, "1", f"comma-separated ensemble sizes K (e.g. 1,4,16): K members in one step {against}")
    _add(p, "--images", int, 4096, "training images per member per timed repetition, in whole chunks, at least one")
    _add(p, "--repeats", int, 5, "timed repetitions of each runner, alternating")
    add_config_flags(p, bench.BENCH_FLAGS)
    _add(p, "--member-group", int, 0, "members vmapped together, as jaxvae train takes it")
    modes = "torch_ref's one-model steps timed, comma-separated: eager, autocast (bfloat16), compile (torch.compile)"
    _add(p, "--torch-modes", str, "eager", modes)
    _add(p, "--torch-compile-backend", str, "inductor", "torch.compile's backend (eager: no C++ compiler needed)")
    _add(p, "--no-torch", bool, False, "time jaxvae alone")
    _add(p, "--json", bool, False, "print one JSON object instead of the table")
    return parser


def _train(args) -> int:
    lists = {name: getattr(args, name) for name in PER_MEMBER}
    members = member_grid(config_from_args(args, **{name: values[0] for name, values in lists.items()}), lists)
    if args.resume and args.out is None:
        raise UserError("--resume needs --out: the run folder to continue")
    several = distributed.check_flags(args.coordinator, args.num_processes, args.process_id, args.coordinator_timeout)
    if several and args.out is None:
        raise UserError("several processes need one --out that all of them share")
    if several:
        distributed.watch_stop_signals(
            lambda name: f"jaxvae train: stopped by {name} while blocked in the run's runtime{_resume_hint(args)}"
        )
        flags = (args.coordinator, args.num_processes, args.process_id, args.coordinator_timeout)
        distributed.initialize(*flags, prefix="jaxvae train")
    out = args.out = args.out or new_run_dir()  # in args: a stopped run's last line names it
    single = len(members) == 1 and not (args.resume and (out / ENSEMBLE).is_file())
    summary = train_members(members, out, args.resume, None if single else lists, args.member_group)
    rate = summary["images_per_second" if single else "member_images_per_second"]  # None: nothing was trained
    speed = f", {rate:.0f} {'images' if single else 'member-images'}/s" if rate else ""
    done = f"test loss {summary['final_test']['loss']:.4f}{speed}" if single else f"{len(members)} members{speed}"
    if distributed.is_primary():
        for member in summary.get("members", []):
            print(f"{member['name']}: test loss {member['final_test']['loss']:.4f}")
        runs = f", each member's run in {out / 'members'}" if "members" in summary else ""
        print(f"done: {out} ({done}); plots in {out / 'plots'}{runs}")
    return 0


def _run_command(args) -> int:
    if args.command == "train":
        return _train(args)
    if args.command == "evaluate":  # it writes nothing: a stop ends it within a second, even inside a long dispatch
        end_watch = distributed.watch_stop_signals(
            lambda name: f"jaxvae evaluate: stopped by {name} while blocked in a computation", grace=1
        )
        try:
            print(json.dumps(commands.evaluate_run(args.run, args.iw_samples, args.test_examples, args.seed)))
        finally:
            end_watch()
    elif args.command == "sample":
        print(commands.sample_run(args.run, args.n, args.out, args.seed))
    elif args.command == "export":
        print(commands.export_run(args.run, args.to))
    elif args.command == "parity":
        impls = list(CONV_IMPLS) if args.conv_impl == "all" else [args.conv_impl]
        loss = dict(likelihood=args.likelihood, objective=args.objective, samples=args.iw_train_samples)
        text, ok = parity_check(
            args.torch_weights, args.latent_dim, args.batch_size, args.seed, impls, args.json, **loss
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
        if exc.name != "torch":  # torch_ref is part of the install: its absence is a broken install, not a choice
            raise
        raise UserError(
            f"{args.command} needs torch, which is not installed here: pip install torch==2.13.0 (a CPU "
            "build; see the README for other machines)"
        ) from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())  # one line, whatever a library put into the message


def _resume_hint(args) -> str:
    """Read from the files alone: it holds after a process of the run was lost."""
    if args.command != "train" or not args.out:
        return ""
    return f"; {resume_hint(args.out)}{' in every process' if jax.distributed.is_initialized() else ''}"


def _process(args) -> str:
    """Which process of a multi-process run stopped (a lost peer may surface as a failed checkpoint write)."""
    return f"process {args.process_id} of {args.num_processes} stopped: " if jax.distributed.is_initialized() else ""


class Stopped(KeyboardInterrupt):
    """A stop signal but Ctrl-C's (a scheduler's SIGTERM, a closed terminal's SIGHUP): the same clean stop."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.status = 128 + signum


def _stop(signum, frame):
    raise Stopped(signum)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    stops = [s for s in STOP_SIGNALS if s != signal.SIGINT and signal.getsignal(s) != signal.SIG_IGN]
    previous = {s: signal.signal(s, _stop) for s in stops}  # one ignored stays so (nohup's SIGHUP)
    try:
        status = _dispatch(args)
        sys.stdout.flush()  # here, not at the interpreter's exit: a reader gone by now is met below
        return status
    except UserError as exc:
        print(f"jaxvae {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        status = 2
    except KeyboardInterrupt as exc:  # a stop signal: each finished epoch's checkpoint is whole
        how, status = (f"stopped by {exc}", exc.status) if isinstance(exc, Stopped) else ("interrupted", 130)
        print(f"jaxvae {args.command}: {how}{_resume_hint(args)}", file=sys.stderr)
    except BrokenPipeError:  # the reader of our output left (`| head`) with what it wanted: silent, as SIGPIPE ends
        status = 128 + 13  # a C tool, and with its status (SIGPIPE is 13; Windows has no signal.SIGPIPE)
    except OSError as exc:  # a full disk, a quota, a file system turned read-only: what could not be written, and why
        cause = f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc.strerror or exc)
        print(f"jaxvae {args.command}: error: {_process(args)}{cause}{_resume_hint(args)}", file=sys.stderr)
        status = 1
    except Exception as exc:  # noqa: BLE001 - the device's memory, or a multi-process run; anything else is a bug
        text = str(exc) if isinstance(exc, jax.errors.JaxRuntimeError) else ""
        memory = "RESOURCE_EXHAUSTED" in text or "Out of memory" in text  # jax 0.8's CPU: "INTERNAL: ... Out of memory"
        if not (memory or jax.distributed.is_initialized()):
            raise
        if memory:  # a step larger than the device's memory: the flags that ask for less
            what = text.strip().splitlines()[0][:300]  # XLA's first line (on a GPU a buffer report follows)
            cause = f"out of memory ({what}); a smaller batch or --iw-train-samples needs less"
        else:
            cause = f"{distributed.LOST_PROCESS} ({type(exc).__name__}: {_one_line(exc)[:300]})"
        print(f"jaxvae {args.command}: error: {_process(args)}{cause}{_resume_hint(args)}", file=sys.stderr)
        status = 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if argv is None and status != 2:  # a fault or a signal ends the process, ours: what threads say after is noise
        sys.stderr.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # (Orbax's writers, cut short, log their tasks' failures)
        with contextlib.suppress(OSError):  # (stdout's reader may be gone: a closed pipe)
            sys.stdout.flush()
        os._exit(status)  # at once: a computation still running is not waited for (jax 0.8's wait takes a signal)
    if jax.distributed.is_initialized():
        distributed.end_run(status)
    return status
