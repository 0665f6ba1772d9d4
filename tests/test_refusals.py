"""Every refusal of the command line, as a table: the command, its exit status, the first words of its one line
on stderr. Each runs in this process and compiles nothing (a refusal comes before any compilation), and every
file that was there before is byte for byte the same after. One refusal runs as its own process, to show the whole
of stderr is that one line."""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SMALL_RUN
from jaxvae.cli import main

pytestmark = pytest.mark.xdist_group("refusals")  # one worker computes the module's fixtures

TRAIN = "jaxvae train: error: "
EVALUATE, BENCH, PARITY = "jaxvae evaluate: error: ", "jaxvae bench: error: ", "jaxvae parity: error: "
SEED_RANGE = "--seed must be an integer in 0..4294967295"
RUN = SMALL_RUN


def checksums(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def place(tmp_path_factory, small_run, ensemble_run):
    """A scratch folder holding: ``run`` and ``ensemble`` (copies of the suite's runs), ``damaged`` (the run with its
    last checkpoint overwritten), ``empty/``, ``file`` (a regular file), ``mine.png`` and ``mine.pt`` (files a user
    already has), ``garbage.pt`` and ``partial.pt`` (a file that is no torch state dict, one that lacks a key)."""
    root = tmp_path_factory.mktemp("refusals")
    shutil.copytree(small_run, root / "run")
    shutil.copytree(ensemble_run, root / "ensemble")
    shutil.copytree(small_run, root / "damaged")
    for f in (root / "damaged" / "checkpoints" / "2" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage")
    import torch

    from torch_ref import VAE as TorchVAE

    state = TorchVAE(2).state_dict()
    del state["decoder.8.bias"]
    torch.save(state, root / "partial.pt")
    (root / "garbage.pt").write_bytes(b"not a torch file")
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
    (
        "batch larger than the data",
        ["train", "--batch-size", "5000", "--out", "{}/new"],
        2,
        TRAIN + "--batch-size 5000 is larger",
    ),
    ("idx folder missing", ["train", "--dataset", "idx:{}/nope"], 2, TRAIN + "idx: {}/nope is not a directory"),
    (
        "resume, damaged checkpoint",
        ["train", "--resume", "--epochs", "3", "--out", "{}/damaged", *RUN],
        2,
        TRAIN + "checkpoint {}/damaged/checkpoints/2 is damaged",
    ),
    ("processes", ["train", "--num-processes", "2"], 2, TRAIN + "--coordinator, --num-processes and --process-id go"),
    (
        "coordinator address",
        ["train", "--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"],
        2,
        TRAIN + "--coordinator must be HOST:PORT",
    ),
    (
        "process id",
        ["train", "--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"],
        2,
        TRAIN + "--process-id must be in 0..1",
    ),
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
        "sampled binarisation, several seeds",
        ["train", "--seed", "1,2", "--likelihood", "bernoulli", "--binarize", "sample", "--out", "{}/new"],
        2,
        TRAIN + "--binarize sample draws each member's test split",
    ),
    (
        "an ensemble resumed with other lists",
        ["train", "--resume", "--epochs", "3", "--out", "{}/ensemble", *RUN, "--seed", "123,8", "--lr", "5e-4,1e-3"],
        2,
        TRAIN + "--resume: this ensemble was trained with --seed 123,7 --lr 0.0005,0.001 --reconstruction-weight 1,0.5",
    ),
    (
        "an ensemble resumed without its lists",
        ["train", "--resume", "--epochs", "3", "--out", "{}/ensemble", *RUN],
        2,
        TRAIN + "--resume: this ensemble was trained with --seed 123,7",
    ),
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
    (
        "evaluate test 0",
        ["evaluate", "--run", "{}/run", "--test-examples", "0"],
        2,
        EVALUATE + "--test-examples must be",
    ),
    (
        "evaluate iw not a number",
        ["evaluate", "--run", "{}/run", "--iw-samples", "many"],
        2,
        EVALUATE + "argument --iw",
    ),
    ("bench sizes", ["bench", "--batch-sizes", "8,x"], 2, BENCH + "--batch-sizes must be comma-separated"),
    ("bench size 0", ["bench", "--batch-sizes", "0"], 2, BENCH + "--batch-sizes must be positive integers"),
    ("bench members", ["bench", "--members", "0"], 2, BENCH + "--members must be positive integers"),
    ("bench repeats", ["bench", "--repeats", "0"], 2, BENCH + "--repeats and --images must be positive"),
    (
        "bench size too large",
        ["bench", "--batch-sizes", "5000"],
        2,
        BENCH + "batch size 5000 is larger than the training images",
    ),
    ("bench conv impl", ["bench", "--conv-impl", "cudnn"], 2, BENCH + "--conv-impl must be one of"),
    ("bench micro-batch", ["bench", "--micro-batch", "-2"], 2, BENCH + "--micro-batch must be >= 0"),
    ("parity batch", ["parity", "--batch-size", "0"], 2, PARITY + "--batch-size must be between 1 and 1000"),
    ("parity latent", ["parity", "--latent-dim", "0"], 2, PARITY + "--latent-dim must be an integer in 1..4096"),
    (
        "parity garbage weights",
        ["parity", "--torch-weights", "{}/garbage.pt"],
        2,
        PARITY + "--torch-weights {}/garbage",
    ),
    (
        "parity partial weights",
        ["parity", "--torch-weights", "{}/partial.pt"],
        2,
        PARITY + "--torch-weights {}/partial",
    ),
]
NEEDS_TORCH = [
    ("export", ["export", "--run", "{}/run", "--to", "{}/w.pt"]),
    ("parity", ["parity", "--batch-size", "2"]),
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


@pytest.mark.parametrize("args", [c[1] for c in NEEDS_TORCH], ids=[c[0] for c in NEEDS_TORCH])
def test_commands_that_need_torch_say_so_where_it_is_missing(place, capsys, monkeypatch, args):
    """torch hidden from the process (as on a machine with ``pip install -e .`` alone)."""
    monkeypatch.setitem(sys.modules, "torch", None)
    test_refusal(place, capsys, args, 2, f"jaxvae {args[0]}: error: {args[0]} needs torch, which is not installed")


def test_a_refusal_is_the_whole_of_stderr(tmp_path):
    """In a process of its own: exit status 2, one line on stderr, no traceback, nothing written."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "jaxvae.cli", "train", "--out", str(out), "--seed", "-1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.startswith(TRAIN + SEED_RANGE)
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
