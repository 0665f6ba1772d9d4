"""A training run's settings: one ``RunConfig`` field per ``jaxvae train`` flag, with its default, help, check and
whether it is part of the run's identity stated once, in the field; the flags, ``--help`` and the checks are
generated from the fields. Also the checks that need the data or the devices.
"""

from __future__ import annotations

import argparse
import math
import numbers
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from jaxvae.data.binarize import BINARIZE_MODES
from jaxvae.errors import UserError
from jaxvae.layers import COMPUTE_DTYPES, CONV_IMPLS
from jaxvae.likelihoods import LIKELIHOODS, OBJECTIVES
from jaxvae.run.files import read_json

SEED_RANGE = (0, 2**32 - 1)  # jax.random.PRNGKey's seed is 32 bits: larger seeds would repeat smaller ones
# Three 3136 x L layers (the heads and the decoder's input) with Adam's two moments and the gradient: 4096 is
# ~0.8 GB of training state; 100,000 would be ~20 GB, which the kernel kills mid-compile on a 24 GB machine.
MAX_LATENT_DIM = 4096
LIST_HINT = "a comma-separated list trains an ensemble, one member per combination"


def rule(ok: Callable, words: str) -> Callable:
    """A field's check: None when ``ok(value)`` (or the value is None, unset), else '{flag} must be {words}'."""
    return lambda flag, value: None if value is None or ok(value) else f"{flag} must be {words}, got {value!r}"


def at_least(low: int, note: str = "") -> Callable:
    return rule(lambda v: v >= low, f"at least {low}" if low else f">= 0{note}")


def one_of(*choices: str) -> Callable:
    return rule(lambda v: v in choices, f"one of {', '.join(choices)}")


IN_SEED_RANGE = rule(lambda v: SEED_RANGE[0] <= v <= SEED_RANGE[1], "an integer in {}..{}".format(*SEED_RANGE))


def setting(default, help: str, check=None, shown=None, per_member=False, identity=True):
    """A ``RunConfig`` field: its default, ``--help`` text and check; how ``--help`` shows the default; whether the
    members of an ensemble may each have their own value (``jaxvae train`` then takes a list); and whether it is
    part of the run's identity (it changes the trajectory: a resumed run must keep the first part's value)."""
    metadata = {"help": help, "check": check, "shown": shown, "per_member": per_member, "identity": identity}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunConfig:
    """The settings of one ``train`` run, one field per ``jaxvae train`` flag (defaults: the seed notebook's)."""

    dataset: str = setting("mnist5k", "mnist5k (embedded), mnist, fashion_mnist, or idx:DIR (the 4 IDX files in DIR)")
    epochs: int = setting(20, "epochs to train (with --resume: the run's total)", at_least(1), identity=False)
    batch_size: int = setting(32, "images per step (over every device together)", at_least(1))
    seed: int = setting(
        123,
        f"the seed of initialisation, shuffle and noise, in {SEED_RANGE[0]}..{SEED_RANGE[1]}",
        IN_SEED_RANGE,
        per_member=True,
    )
    lr: float = setting(
        5e-4, "Adam's learning rate", rule(lambda v: 0 < v < math.inf, "a finite positive number"), per_member=True
    )
    latent_dim: int = setting(
        2,
        f"size of the latent space, at most {MAX_LATENT_DIM}",
        rule(lambda v: 1 <= v <= MAX_LATENT_DIM, f"an integer in 1..{MAX_LATENT_DIM}"),
    )
    reconstruction_weight: float = setting(
        1.0,
        "the loss is weight * reconstruction + KL",
        rule(lambda v: 0 <= v < math.inf, "a finite number >= 0"),
        per_member=True,
    )
    conv_impl: str = setting(
        "auto", "auto (matmul on CPU, xla elsewhere), xla, matmul or pad", one_of("auto", *CONV_IMPLS)
    )
    compute_dtype: str = setting(
        "float32",
        "float32, or bfloat16: convolutions and matmuls on bfloat16 operands with float32 accumulation "
        "(parameters, gradients and Adam's state stay float32)",
        one_of(*COMPUTE_DTYPES),
    )
    train_examples: int | None = setting(None, "train on the first N training images only", at_least(1), "all")
    test_examples: int | None = setting(None, "evaluate on the first N test images", at_least(1), "all", identity=False)
    data_dir: str | None = setting(None, "tensorflow-datasets data dir", shown="TFDS's own", identity=False)
    chunk_steps: int = setting(
        0, "training steps per dispatch (0: about 2,048 images' worth); changes no bit", at_least(0), identity=False
    )
    micro_batch: int = setting(
        0,
        "compute each step's gradient in micro-batches of N (0: 16 on CPU, whole batches elsewhere; one that does not "
        "divide a device's rows: whole batches); changes the order of float32 sums, so a resumed run keeps it",
        at_least(0, " (0: automatic)"),
    )
    eval_every: int = setting(
        1,
        "evaluate the test split after every N-th epoch and the last (0: the last only)",
        at_least(0, " (0: after the last epoch only)"),
        identity=False,
    )
    devices: int = setting(
        0, "data parallel over the first N devices (0: all)", at_least(0, " (0: all)"), identity=False
    )
    likelihood: str = setting(
        "gaussian",
        "gaussian (the seed's summed squared error) or bernoulli (binary cross-entropy on the decoder's logits)",
        one_of(*LIKELIHOODS),
    )
    binarize: str = setting(
        "none",
        "none, threshold (pixel > 0.5) or sample (a fresh Bernoulli draw of each training image every epoch; the test "
        "split drawn once from --seed)",
        one_of(*BINARIZE_MODES),
    )
    binarize_seed: int | None = setting(
        None,
        "the seed of the test split's one Bernoulli draw under --binarize sample; one value for every member lets an "
        "ensemble sweep --seed",
        IN_SEED_RANGE,
        "--seed",
    )
    objective: str = setting(
        "elbo",
        "elbo, or iwae: the importance-weighted bound of --iw-train-samples draws (Burda et al. 2016), tighter as "
        "they grow",
        one_of(*OBJECTIVES),
    )
    iw_train_samples: int = setting(
        1,
        "draws of z per training image, k: elbo averages their ELBOs, iwae log-mean-exps their importance weights; "
        "the decoder does k times the work",
        at_least(1),
    )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> RunConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


PER_MEMBER = tuple(f.name for f in fields(RunConfig) if f.metadata["per_member"])
TYPES = typing.get_type_hints(RunConfig)  # name -> annotation, e.g. int | None


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _value_type(name: str) -> type:
    """The flag's argparse type: the field's annotation, without ``| None``."""
    return ([t for t in typing.get_args(TYPES[name]) if t is not type(None)] or [TYPES[name]])[0]


def _has_type(name: str, value) -> bool:
    """Whether ``value`` is of the field's kind (any integer for an int, any real for a float; None where the field
    may be unset): argparse's values always are, a damaged ``config.json``'s or a library caller's may not be."""
    hints = typing.get_args(TYPES[name]) or [TYPES[name]]
    kinds = tuple({int: numbers.Integral, float: numbers.Real}.get(k, k) for k in hints)
    return not isinstance(value, bool) and isinstance(value, kinds)


def given_twice(values) -> str | None:
    """What is wrong with a list of ``values`` that gives one twice (the smallest such), or None: each value once."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    return f"gives {repeated[0]} twice; each value once" if repeated else None


def _flag_type(name: str, lists: bool) -> Callable:
    """The argparse type of a flag. With ``lists``, a per-member flag takes one value or a comma-separated list of
    distinct values (a tuple, each value checked as its member's setting) and the other flags refuse a list."""
    convert = _value_type(name)
    if not lists:
        return convert

    def parse(text: str):
        items = [item.strip() for item in text.split(",")]
        if name not in PER_MEMBER:
            if len(items) == 1:
                return convert(text)
            varying = ", ".join(flag_name(n) for n in PER_MEMBER)
            raise argparse.ArgumentTypeError(
                f"takes one value, got {text!r}: every member of an ensemble shares it (only {varying} take lists)"
            )
        if "" in items:
            raise argparse.ArgumentTypeError(f"{text!r} has an empty item; give values like 1,2,3 (no spaces needed)")
        try:
            values = tuple(convert(item) for item in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a list of {convert.__name__} values") from None
        if twice := given_twice(values):
            raise argparse.ArgumentTypeError(f"{text!r} {twice}")
        return values

    parse.__name__ = convert.__name__ if name not in PER_MEMBER else f"{flag_name(name)} list"
    return parse


def shown(f) -> str:
    """How ``--help`` shows a field's default."""
    return f.metadata["shown"] or f.default


def add_config_flags(parser: argparse.ArgumentParser, names: list[str] | None = None, lists: bool = False) -> None:
    """One flag per ``RunConfig`` field (or per field in ``names``), its help ending in its default; with
    ``lists``, the per-member flags take comma-separated lists (tuples)."""
    for f in fields(RunConfig):
        if names is None or f.name in names:
            listed = lists and f.name in PER_MEMBER
            parser.add_argument(
                flag_name(f.name),
                type=_flag_type(f.name, lists),
                default=(f.default,) if listed else f.default,
                help=f"{f.metadata['help']}{'; ' + LIST_HINT if listed else ''} (default: {shown(f)})",
            )


def config_from_args(args: argparse.Namespace, **overrides) -> RunConfig:
    """The ``RunConfig`` of parsed flags; fields without a flag keep their defaults."""
    given = {f.name: getattr(args, f.name) for f in fields(RunConfig) if hasattr(args, f.name)}
    return RunConfig(**{**given, **overrides})


def check_value(name: str, value) -> None:
    """Refuse a bad value (or type) of the field ``name`` in one line that names its flag."""
    if not _has_type(name, value):
        raise UserError(f"{flag_name(name)} must be of type {_value_type(name).__name__}, got {value!r}")
    check = next(f for f in fields(RunConfig) if f.name == name).metadata["check"]
    if check and (message := check(flag_name(name), value)):
        raise UserError(message)


def check_flags(config: RunConfig) -> None:
    """Reject bad flag values before anything is loaded or written."""
    for f in fields(RunConfig):
        check_value(f.name, getattr(config, f.name))


def load_config(path: Path, what: str) -> RunConfig:
    """The settings a run saved in ``path`` (its ``config.json``), checked as flags are: a damaged file is refused in
    one line ending in ``what``."""
    config = RunConfig.from_json(read_json(path, what))
    try:
        check_flags(config)
    except UserError as exc:
        raise UserError(f"{path} is damaged ({exc}); {what}") from None
    return config


def check_resumable(saved: RunConfig, given: RunConfig) -> None:
    """A resumed run continues the saved one: every setting of its identity must match."""
    for f in fields(RunConfig):
        old, new = getattr(saved, f.name), getattr(given, f.name)
        if f.metadata["identity"] and old != new:
            flag = flag_name(f.name)
            was, keep = (old, f"pass {flag} {old}") if old is not None else ("unset", f"leave {flag} out")
            raise UserError(f"--resume: this run was trained with {flag} {was}, not {new}; {keep} or start a new --out")


def evaluates_after(config: RunConfig, epoch: int) -> bool:
    """Whether the test split is evaluated after ``epoch``: every ``eval_every``-th epoch, and the last."""
    return epoch == config.epochs or (config.eval_every > 0 and epoch % config.eval_every == 0)


def check_batch_fits(config: RunConfig, num_train: int) -> None:
    if config.batch_size > num_train:
        raise UserError(
            f"--batch-size {config.batch_size} is larger than the training split ({num_train} images); use a smaller"
        )


def check_batch_splits(config: RunConfig, devices: int) -> None:
    """Every device takes an equal part of each batch."""
    if config.batch_size % devices:
        fits = [d for d in range(1, devices + 1) if config.batch_size % d == 0][-1]
        larger = -(-config.batch_size // devices) * devices
        raise UserError(
            f"--batch-size {config.batch_size} does not split over {devices} devices; use a multiple of "
            f"{devices} (e.g. --batch-size {larger}) or --devices {fits}"
        )


def chunk_length(steps_per_epoch: int, batch_size: int, requested: int = 0) -> int:
    """Steps per dispatch: a divisor of the epoch's steps (one compiled chunk serves every epoch). The default aims at
    about 2,048 images per chunk: long enough to amortise dispatch on accelerators, short enough for the progress
    bar to move every second or so on a CPU."""
    target = min(requested or max(1, 2048 // batch_size), steps_per_epoch)
    return max(d for d in range(1, target + 1) if steps_per_epoch % d == 0)
