"""Every refusal of the command line, as a table: the command, its exit status, the first words of its one line
on stderr. Each runs in this process and compiles nothing (a refusal comes before any compilation), and every
file that was there before is byte for byte the same after."""

import hashlib
import shutil
from pathlib import Path

import pytest

from jaxvae.cli import main

TRAIN = "jaxvae train: error: "
SEED_RANGE = "--seed must be an integer in 0..4294967295"
RUN = ["--train-examples", "256", "--test-examples", "100", "--batch-size", "32", "--chunk-steps", "4"]  # small_run's


def checksums(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def place(tmp_path_factory, small_run):
    """A scratch folder holding: ``run`` (a copy of the suite's 2-epoch run), ``empty/``, ``file`` (a regular
    file), ``mine.png`` and ``mine.pt`` (files a user already has)."""
    root = tmp_path_factory.mktemp("refusals")
    shutil.copytree(small_run, root / "run")
    (root / "empty").mkdir()
    (root / "file").write_text("a regular file")
    (root / "mine.png").write_bytes(b"precious picture")
    (root / "mine.pt").write_bytes(b"precious weights")
    return root


CASES = [
    # (id, arguments ({} is the scratch folder), expected exit status, expected start of stderr)
    ("seed negative", ["train", "--seed", "-1"], 2, TRAIN + SEED_RANGE),
    ("seed 2**40", ["train", "--seed", str(2**40)], 2, TRAIN + SEED_RANGE),
    ("seed 2**64", ["train", "--seed", str(2**64)], 2, TRAIN + SEED_RANGE),
    ("epochs 0", ["train", "--epochs", "0"], 2, TRAIN + "--epochs must be at least 1"),
    ("epochs not a number", ["train", "--epochs", "two"], 2, TRAIN + "argument --epochs: invalid int value"),
    ("lr nan", ["train", "--lr", "nan"], 2, TRAIN + "--lr must be a finite positive number"),
    ("batch 0", ["train", "--batch-size", "0"], 2, TRAIN + "--batch-size must be at least 1"),
    ("latent 0", ["train", "--latent-dim", "0"], 2, TRAIN + "--latent-dim must be an integer in 1..4096"),
    ("latent too large", ["train", "--latent-dim", "100000"], 2, TRAIN + "--latent-dim must be an integer in 1..4096"),
    ("micro-batch", ["train", "--micro-batch", "-1"], 2, TRAIN + "--micro-batch must be >= 0"),
    ("devices", ["train", "--devices", "-1"], 2, TRAIN + "--devices must be >= 0"),
    ("conv impl", ["train", "--conv-impl", "cudnn"], 2, TRAIN + "--conv-impl must be one of auto, xla, matmul, pad"),
    (
        "compute dtype",
        ["train", "--compute-dtype", "float16"],
        2,
        TRAIN + "--compute-dtype must be one of float32, bfloat16",
    ),
    ("likelihood", ["train", "--likelihood", "poisson"], 2, TRAIN + "--likelihood must be one of gaussian, bernoulli"),
    ("dataset", ["train", "--dataset", "cifar10"], 2, TRAIN + "unknown dataset 'cifar10'"),
    ("out under /proc", ["train", "--out", "/proc/jaxvae-run"], 2, TRAIN + "--out /proc/jaxvae-run cannot be written"),
    ("out below a file", ["train", "--out", "{}/file/run"], 2, TRAIN + "--out {}/file/run: {}/file is a file"),
    ("out holds a run", ["train", "--out", "{}/run"], 2, TRAIN + "--out {}/run already holds a run"),
    ("resume without out", ["train", "--resume"], 2, TRAIN + "--resume needs --out"),
    ("resume nothing", ["train", "--resume", "--out", "{}/empty"], 2, TRAIN + "--resume: {}/empty holds no run"),
    (
        "resume, long enough",
        ["train", "--resume", "--epochs", "2", "--out", "{}/run", *RUN],
        2,
        TRAIN + "--resume: {}/run has trained 2 epochs already",
    ),
    (
        "resume other latent",
        ["train", "--resume", "--epochs", "3", "--latent-dim", "4", "--out", "{}/run", *RUN],
        2,
        TRAIN + "--resume: this run was trained with --latent-dim 2, not 4",
    ),
    ("processes", ["train", "--num-processes", "2"], 2, TRAIN + "--coordinator, --num-processes and --process-id go"),
    # ensembles: lists for --seed, --lr and --reconstruction-weight only
    ("list, empty item", ["train", "--seed", "1,,2"], 2, TRAIN + "argument --seed: '1,,2' has an empty item"),
    ("list, trailing comma", ["train", "--lr", "1e-3,"], 2, TRAIN + "argument --lr: '1e-3,' has an empty item"),
    ("list, bad value", ["train", "--lr", "1e-3,fast"], 2, TRAIN + "argument --lr: '1e-3,fast' is not a list of float"),
    ("list, value out of range", ["train", "--lr", "1e-3,0"], 2, TRAIN + "--lr must be a finite positive number"),
    ("list, seed out of range", ["train", "--seed", "1," + str(2**40)], 2, TRAIN + SEED_RANGE),
    ("list, negative weight", ["train", "--reconstruction-weight", "1,-1"], 2, TRAIN + "--reconstruction-weight must"),
    ("list, repeated value", ["train", "--seed", "1,2,1"], 2, TRAIN + "argument --seed: '1,2,1' gives 1 twice"),
    ("list, latent", ["train", "--latent-dim", "2,4"], 2, TRAIN + "argument --latent-dim: takes one value, got '2,4'"),
    ("list, batch", ["train", "--batch-size", "32,64"], 2, TRAIN + "argument --batch-size: takes one value"),
    ("list, epochs", ["train", "--epochs", "1,2"], 2, TRAIN + "argument --epochs: takes one value"),
    ("list, dataset", ["train", "--dataset", "mnist,fashion_mnist"], 2, TRAIN + "argument --dataset: takes one"),
    ("member group", ["train", "--seed", "1,2", "--member-group", "-1"], 2, TRAIN + "--member-group must be >= 0"),
    (
        "list, a single run resumed as an ensemble",
        ["train", "--resume", "--epochs", "3", "--seed", "1,2", "--out", "{}/run", *RUN],
        2,
        TRAIN + "--resume: {}/run holds no ensemble to resume (no ensemble.json)",
    ),
    (
        "evaluate no folder",
        ["evaluate", "--run", "{}/nope"],
        2,
        "jaxvae evaluate: error: --run {}/nope is not a folder",
    ),
    ("evaluate not a run", ["evaluate", "--run", "{}/empty"], 2, "jaxvae evaluate: error: {}/empty has no config.json"),
    (
        "evaluate iw 0",
        ["evaluate", "--run", "{}/run", "--iw-samples", "0"],
        2,
        "jaxvae evaluate: error: --iw-samples must be at least 1",
    ),
    (
        "sample n 0",
        ["sample", "--run", "{}/run", "-n", "0", "--out", "{}/s.png"],
        2,
        "jaxvae sample: error: -n must be an integer in 1..1024",
    ),
    (
        "sample n huge",
        ["sample", "--run", "{}/run", "-n", "100000000", "--out", "{}/s.png"],
        2,
        "jaxvae sample: error: -n must be an integer in 1..1024",
    ),
    (
        "sample not png",
        ["sample", "--run", "{}/run", "--out", "{}/s.jpg"],
        2,
        "jaxvae sample: error: --out {}/s.jpg must",
    ),
    (
        "sample exists",
        ["sample", "--run", "{}/run", "--out", "{}/mine.png"],
        2,
        "jaxvae sample: error: {}/mine.png already exists",
    ),
    (
        "sample /proc",
        ["sample", "--run", "{}/run", "--out", "/proc/x.png"],
        2,
        "jaxvae sample: error: --out /proc/x.png cannot be written",
    ),
    (
        "export exists",
        ["export", "--run", "{}/run", "--to", "{}/mine.pt"],
        2,
        "jaxvae export: error: {}/mine.pt already",
    ),
    (
        "export below a file",
        ["export", "--run", "{}/run", "--to", "{}/file/w.pt"],
        2,
        "jaxvae export: error: --to {}/file/w.pt: {}/file is a file",
    ),
    ("bench sizes", ["bench", "--batch-sizes", "8,x"], 2, "jaxvae bench: error: --batch-sizes must be comma-separated"),
    ("parity batch", ["parity", "--batch-size", "0"], 2, "jaxvae parity: error: --batch-size must be between 1 and"),
]


def exit_status(args: list[str]) -> int:
    """``jaxvae ARGS`` in this process: its exit status, whether it returns one or exits (argparse's errors)."""
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize("args, status, start", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refusal(place, capsys, args, status, start):
    before = checksums(place)
    assert exit_status([a.replace("{}", str(place)) for a in args]) == status
    err = capsys.readouterr().err
    assert err.startswith(start.replace("{}", str(place))), err
    assert len(err.strip().splitlines()) == 1, err
    assert checksums(place) == before
