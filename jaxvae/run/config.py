"""A training run's settings: one ``RunConfig`` field per ``jaxvae train`` flag, with its default, help and check
stated once, in the field; the flags, ``--help`` and the checks are generated from the fields. Also the
settings a resumed run must share with its first part, and the checks that need the data or the devices.
"""

from __future__ import annotations

import argparse
import math
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

from jaxvae.data.binarize import BINARIZE_MODES
from jaxvae.errors import UserError
from jaxvae.layers import COMPUTE_DTYPES, CONV_IMPLS
from jaxvae.likelihoods import LIKELIHOODS

SEED_RANGE = (0, 2**32 - 1)  # jax.random.PRNGKey's seed is 32 bits: larger seeds would repeat smaller ones
# Three 3136 x L layers (the heads and the decoder's input) with Adam's two moments and the gradient: 4096 is
# ~0.8 GB of training state; 100,000 would be ~20 GB, which the kernel kills mid-compile on a 24 GB machine.
MAX_LATENT_DIM = 4096


def at_least(low: int, note: str = "") -> Callable:
    def check(flag, value):
        if value is not None and value < low:
            return (
                f"{flag} must be at least {low}, got {value}"
                if low > 0
                else f"{flag} must be >= {low}{note}, got {value}"
            )
        return None

    return check


def finite(low: float, strict: bool, words: str) -> Callable:
    def check(flag, value):
        if not (math.isfinite(value) and (value > low if strict else value >= low)):
            return f"{flag} must be {words}, got {value}"
        return None

    return check


def one_of(*choices: str) -> Callable:
    def check(flag, value):
        return None if value in choices else f"{flag} must be one of {', '.join(choices)}; got {value!r}"

    return check


def in_range(low: int, high: int) -> Callable:
    def check(flag, value):
        return None if low <= value <= high else f"{flag} must be an integer in {low}..{high}, got {value}"

    return check


def setting(default, help: str, check: Callable | None = None, shown: str | None = None, per_member: bool = False):
    """A ``RunConfig`` field: its default, its ``--help`` text, its check, how ``--help`` shows the default, and
    whether the members of an ensemble may each have their own value (``jaxvae train`` then takes a list)."""
    return field(default=default, metadata={"help": help, "check": check, "shown": shown, "per_member": per_member})


@dataclass(frozen=True)
class RunConfig:
    """The settings of one ``train`` run, one field per ``jaxvae train`` flag (defaults: the seed notebook's)."""

    dataset: str = setting(
        "mnist5k", "mnist5k (embedded), mnist, fashion_mnist, or idx:DIR (the four IDX files in DIR)"
    )
    epochs: int = setting(20, "epochs to train (with --resume: the run's total)", at_least(1))
    batch_size: int = setting(32, "images per step (over every device together)", at_least(1))
    seed: int = setting(
        123,
        f"the seed of initialisation, shuffle and noise, in {SEED_RANGE[0]}..{SEED_RANGE[1]}",
        in_range(*SEED_RANGE),
        per_member=True,
    )
    lr: float = setting(5e-4, "Adam's learning rate", finite(0.0, True, "a finite positive number"), per_member=True)
    latent_dim: int = setting(2, f"size of the latent space, at most {MAX_LATENT_DIM}", in_range(1, MAX_LATENT_DIM))
    reconstruction_weight: float = setting(
        1.0, "the loss is weight * reconstruction + KL", finite(0.0, False, "a finite number >= 0"), per_member=True
    )
    conv_impl: str = setting(
        "auto",
        "auto (matmul on CPU, xla elsewhere), xla, matmul or pad: see jaxvae/layers.py",
        one_of("auto", *CONV_IMPLS),
    )
    compute_dtype: str = setting(
        "float32",
        "float32, or bfloat16: convolutions and matmuls on bfloat16 operands with float32 accumulation "
        "(parameters, gradients and Adam's state stay float32)",
        one_of(*COMPUTE_DTYPES),
    )
    train_examples: int | None = setting(None, "train on the first N training images only", at_least(1), "all")
    test_examples: int | None = setting(None, "evaluate on the first N test images only", at_least(1), "all")
    data_dir: str | None = setting(None, "tensorflow-datasets data dir (for mnist, fashion_mnist)", shown="TFDS's own")
    chunk_steps: int = setting(0, "training steps per dispatch (0: about 2,048 images' worth)", at_least(0))
    micro_batch: int = setting(
        0,
        "compute each step's gradient in micro-batches of N (0: 16 on CPU, whole batches elsewhere)",
        at_least(0, " (0: automatic)"),
    )
    eval_every: int = setting(
        1,
        "evaluate the test split after every N-th epoch and the last (0: the last only)",
        at_least(0, " (0: after the last epoch only)"),
    )
    devices: int = setting(
        0, "data parallel over the first N visible devices (0: all)", at_least(0, " (0: all visible devices)")
    )
    likelihood: str = setting(
        "gaussian",
        "gaussian (the seed's summed squared error) or bernoulli (binary cross-entropy on the decoder's logits)",
        one_of(*LIKELIHOODS),
    )
    binarize: str = setting(
        "none",
        "none, threshold (pixel > 0.5) or sample (a fresh Bernoulli draw of each "
        "training image every epoch; the test split drawn once from --seed)",
        one_of(*BINARIZE_MODES),
    )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> RunConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field(name: str):
    return next(f for f in fields(RunConfig) if f.name == name)


def _value_type(name: str) -> type:
    """The flag's argparse type: the field's annotation, without ``| None``."""
    hint = typing.get_type_hints(RunConfig)[name]
    options = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    return options[0]


PER_MEMBER = tuple(f.name for f in fields(RunConfig) if f.metadata["per_member"])
LIST_HINT = "a comma-separated list trains an ensemble, one member per combination"


def value_list(name: str) -> Callable:
    """The argparse type of a per-member flag: one value or a comma-separated list of distinct values, as a tuple."""
    convert, flag = _value_type(name), flag_name(name)

    def parse(text: str) -> tuple:
        items = [item.strip() for item in text.split(",")]
        if "" in items:
            raise argparse.ArgumentTypeError(f"{text!r} has an empty item; give values like 1,2,3 (no spaces needed)")
        try:
            values = tuple(convert(item) for item in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a list of {convert.__name__} values") from None
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise argparse.ArgumentTypeError(f"{text!r} gives {repeated[0]} twice; each value once")
        return values  # each value is checked as the member's setting (check_flags)

    parse.__name__ = f"{flag} list"
    return parse


def single_value(name: str) -> Callable:
    """The argparse type of a flag every member of an ensemble shares: a list is refused in one line."""
    convert = _value_type(name)

    def parse(text: str):
        if "," in text:
            varying = ", ".join(flag_name(n) for n in PER_MEMBER)
            raise argparse.ArgumentTypeError(
                f"takes one value, got {text!r}: every member of an ensemble shares it (only {varying} take lists)"
            )
        return convert(text)

    parse.__name__ = convert.__name__
    return parse


def add_config_flags(parser: argparse.ArgumentParser, names: list[str] | None = None, lists: bool = False) -> None:
    """One flag per ``RunConfig`` field (or per field in ``names``), its help ending in its default; with
    ``lists``, the per-member flags take comma-separated lists (tuples, see ``value_list``)."""
    for f in fields(RunConfig):
        if names is not None and f.name not in names:
            continue
        shown = f.metadata["shown"] or f.default
        listed = lists and f.metadata["per_member"]
        parser.add_argument(
            flag_name(f.name),
            type=value_list(f.name) if listed else single_value(f.name) if lists else _value_type(f.name),
            default=(f.default,) if listed else f.default,
            help=f"{f.metadata['help']}{'; ' + LIST_HINT if listed else ''} (default: {shown})",
        )


def config_from_args(args: argparse.Namespace, **overrides) -> RunConfig:
    """The ``RunConfig`` of parsed flags; fields without a flag keep their defaults."""
    given = {f.name: getattr(args, f.name) for f in fields(RunConfig) if hasattr(args, f.name)}
    return RunConfig(**{**given, **overrides})


def check_value(name: str, value) -> None:
    """Refuse a bad value of the field ``name`` in one line that names its flag."""
    check = _field(name).metadata["check"]
    message = check(flag_name(name), value) if check else None
    if message:
        raise UserError(message)


def check_flags(config: RunConfig) -> None:
    """Reject bad flag values before anything is loaded or written."""
    for f in fields(RunConfig):
        check_value(f.name, getattr(config, f.name))


# Settings that decide the trajectory: a resumed run must use the first part's values.
TRAJECTORY_KEYS = (
    "dataset",
    "batch_size",
    "lr",
    "seed",
    "latent_dim",
    "reconstruction_weight",
    "train_examples",
    "conv_impl",
    "compute_dtype",
    "micro_batch",
    "likelihood",
    "binarize",
)


def evaluates_after(config: RunConfig, epoch: int) -> bool:
    """Whether the test split is evaluated after ``epoch``: every ``eval_every``-th epoch, and the last."""
    return epoch == config.epochs or (config.eval_every > 0 and epoch % config.eval_every == 0)


def check_batch_fits(config: RunConfig, num_train: int) -> None:
    if config.batch_size > num_train:
        raise UserError(
            f"--batch-size {config.batch_size} is larger than the training split ({num_train} images); "
            "use a smaller one"
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


def check_resumable(saved: RunConfig, given: RunConfig) -> None:
    """A resumed run continues the saved one: every trajectory setting must match."""
    for key in TRAJECTORY_KEYS:
        old, new = getattr(saved, key), getattr(given, key)
        if old != new:
            flag = flag_name(key)
            raise UserError(
                f"--resume: this run was trained with {flag} {old}, not {new}; pass {flag} {old} or start a new --out"
            )


def chunk_length(steps_per_epoch: int, batch_size: int, requested: int = 0) -> int:
    """Steps per dispatch: a divisor of the epoch's steps (one compiled chunk serves every epoch).

    The default aims at about 2,048 images per chunk: long enough to amortise dispatch on accelerators,
    short enough for the progress bar to move every second or so on a CPU.
    """
    target = requested or max(1, 2048 // batch_size)
    target = min(target, steps_per_epoch)
    return max(d for d in range(1, target + 1) if steps_per_epoch % d == 0)
