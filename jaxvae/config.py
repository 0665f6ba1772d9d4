"""A training run's settings, their checks, and the settings a resumed run must share with its first part."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from jaxvae.binarize import BINARIZE_MODES
from jaxvae.errors import UserError
from jaxvae.losses import LIKELIHOODS
from jaxvae.layers import CONV_IMPLS


@dataclass(frozen=True)
class RunConfig:
    """The settings of one ``train`` run, one field per ``jaxvae train`` flag (defaults: the seed notebook's)."""

    dataset: str = "mnist5k"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 5e-4
    seed: int = 123
    latent_dim: int = 2
    reconstruction_weight: float = 1.0
    conv_impl: str = "auto"
    train_examples: int | None = None  # the first N training examples only
    test_examples: int | None = None
    data_dir: str | None = None  # tensorflow-datasets' data dir
    chunk_steps: int = 0  # steps per dispatch; 0 picks one from the batch size
    micro_batch: int = 0  # gradient in micro-batches of this size; 0 picks one for the backend
    eval_every: int = 1  # evaluate the test split after every N-th epoch and after the last; 0: the last only
    devices: int = 0  # data parallel over the first N visible devices; 0: all of them
    likelihood: str = "gaussian"  # the decoder: gaussian (the seed's squared error) or bernoulli (BCE on logits)
    binarize: str = "none"  # none, threshold or sample (jaxvae.binarize)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> "RunConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


# Settings that decide the trajectory: a resumed run must use the first part's values.
TRAJECTORY_KEYS = ("dataset", "batch_size", "lr", "seed", "latent_dim", "reconstruction_weight", "train_examples", "conv_impl", "micro_batch",
                  "likelihood", "binarize")


def check_flags(config: RunConfig) -> None:
    """Reject bad flag values before anything is loaded or written."""
    if config.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {config.epochs}")
    if config.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {config.batch_size}")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise UserError(f"--lr must be a finite positive number, got {config.lr}")
    if config.latent_dim < 1:
        raise UserError(f"--latent-dim must be at least 1, got {config.latent_dim}")
    if not (math.isfinite(config.reconstruction_weight) and config.reconstruction_weight >= 0):
        raise UserError(f"--reconstruction-weight must be a finite number >= 0, got {config.reconstruction_weight}")
    for flag, value in (("--train-examples", config.train_examples), ("--test-examples", config.test_examples)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if config.conv_impl not in ("auto", *CONV_IMPLS):
        raise UserError(f"--conv-impl must be one of auto, {', '.join(CONV_IMPLS)}; got {config.conv_impl!r}")
    if config.chunk_steps < 0:
        raise UserError(f"--chunk-steps must be >= 0, got {config.chunk_steps}")
    if config.micro_batch < 0:
        raise UserError(f"--micro-batch must be >= 0 (0: automatic), got {config.micro_batch}")
    if config.eval_every < 0:
        raise UserError(f"--eval-every must be >= 0 (0: after the last epoch only), got {config.eval_every}")
    if config.likelihood not in LIKELIHOODS:
        raise UserError(f"--likelihood must be one of {', '.join(LIKELIHOODS)}; got {config.likelihood!r}")
    if config.binarize not in BINARIZE_MODES:
        raise UserError(f"--binarize must be one of {', '.join(BINARIZE_MODES)}; got {config.binarize!r}")
    if config.devices < 0:
        raise UserError(f"--devices must be >= 0 (0: all visible devices), got {config.devices}")


def evaluates_after(config: RunConfig, epoch: int) -> bool:
    """Whether the test split is evaluated after ``epoch``: every ``eval_every``-th epoch, and the last."""
    return epoch == config.epochs or (config.eval_every > 0 and epoch % config.eval_every == 0)


def check_batch_fits(config: RunConfig, num_train: int) -> None:
    if config.batch_size > num_train:
        raise UserError(f"--batch-size {config.batch_size} is larger than the training split ({num_train} images); use a smaller one")


def check_batch_splits(config: RunConfig, devices: int) -> None:
    """Every device takes an equal part of each batch."""
    if config.batch_size % devices:
        fits = [d for d in range(1, devices + 1) if config.batch_size % d == 0][-1]
        larger = -(-config.batch_size // devices) * devices
        raise UserError(f"--batch-size {config.batch_size} does not split over {devices} devices; use a multiple of {devices} "
                        f"(e.g. --batch-size {larger}) or --devices {fits}")


def check_resumable(saved: RunConfig, given: RunConfig) -> None:
    """A resumed run continues the saved one: every trajectory setting must match."""
    for key in TRAJECTORY_KEYS:
        old, new = getattr(saved, key), getattr(given, key)
        if old != new:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"--resume: this run was trained with {flag} {old}, not {new}; pass {flag} {old} or start a new --out")


def chunk_length(steps_per_epoch: int, batch_size: int, requested: int = 0) -> int:
    """Steps per dispatch: a divisor of the epoch's steps (one compiled chunk serves every epoch).

    The default aims at about 2,048 images per chunk: long enough to amortise dispatch on accelerators,
    short enough for the progress bar to move every second or so on a CPU.
    """
    target = requested or max(1, 2048 // batch_size)
    target = min(target, steps_per_epoch)
    return max(d for d in range(1, target + 1) if steps_per_epoch % d == 0)
