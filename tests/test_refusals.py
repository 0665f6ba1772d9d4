"""Every refusal of the command line, as a table: the command, and the start of its one line on stderr after
``jaxvae COMMAND: error:``; the exit status is 2. Each runs in this process and compiles nothing (a refusal comes
before any compilation), and every file that was there before is byte for byte the same after. One refusal runs as
its own process, to show the whole of stderr is that one line."""

import argparse
import hashlib
import importlib.util
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SMALL_RUN
from jaxvae.data import tfds_source
from jaxvae.run.cli import main
from jaxvae.run.config import RunConfig, check_batch_fits, check_value
from jaxvae.run.distributed import check_flags
from jaxvae.run.files import LOCK

WITH_TORCH = importlib.util.find_spec("torch") is not None
NEEDS_TORCH_HERE = pytest.mark.skipif(not WITH_TORCH, reason="the row needs torch: pip install -e '.[dev]'")
SEED_RANGE = "--seed must be an integer in 0..4294967295"
ENSEMBLE_WAS = "--resume: this ensemble was trained with --seed 123,7 --lr 0.0005,0.001 --reconstruction-weight 1,0.5"
# command | start of the message. {} is the scratch folder (``place``), {run} small_run's flags
TABLE = f"""
train --seed -1                                             | {SEED_RANGE}
train --seed {2**40}                                        | {SEED_RANGE}
train --seed {2**64}                                        | {SEED_RANGE}
train --epochs 0                                            | --epochs must be at least 1
train --epochs two                                          | argument --epochs: invalid int value
train --epochs 2 --bogus 1                         | unrecognized arguments: --bogus 1 (see jaxvae train --help)
train --lr nan                                              | --lr must be a finite positive number
train --batch-size 0                                        | --batch-size must be at least 1
train --latent-dim 0                                        | --latent-dim must be an integer in 1..4096
train --latent-dim 100000                                   | --latent-dim must be an integer in 1..4096
train --micro-batch -1                                      | --micro-batch must be >= 0
train --devices -1                                          | --devices must be >= 0
train --devices 4096                                        | --devices 4096: only
train --conv-impl cudnn                                     | --conv-impl must be one of auto, xla, matmul, pad
train --compute-dtype float16                               | --compute-dtype must be one of float32, bfloat16
train --likelihood poisson                                  | --likelihood must be one of gaussian, bernoulli
train --objective vae                                       | --objective must be one of elbo, iwae
train --iw-train-samples 0                                  | --iw-train-samples must be at least 1
train --binarize-seed -1                                    | --binarize-seed must be an integer in 0..4294967295
train --dataset cifar10                                     | unknown dataset 'cifar10'
train --dataset idx:{{}}/nope                               | idx: {{}}/nope is not a directory
train --dataset mnist --data-dir {{}}/file                  | --data-dir {{}}/file: {{}}/file is a file, not a folder
train --dataset mnist --data-dir {{}}/file/sub              | --data-dir {{}}/file/sub: {{}}/file is a file, not a
train --batch-size 5000 --out {{}}/new                      | --batch-size 5000 is larger than the training split
train --out /proc/jaxvae-run                                | --out /proc/jaxvae-run cannot be written
train --out ''                                              | argument --out: an empty path; name a file or folder
train --out {{}}/file/run                                   | --out {{}}/file/run: {{}}/file is a file
train --out {{}}/run                                        | --out {{}}/run already holds a run
train --resume                                              | --resume needs --out
train --resume --out {{}}/empty                             | --resume: {{}}/empty holds no run
train --resume --epochs 2 --out {{}}/run {{run}}            | --resume: {{}}/run has trained 2 epochs already
train --resume --epochs 3 --latent-dim 4 --out {{}}/run {{run}} | --resume: this run was trained with --latent-dim 2
train --resume --epochs 3 --objective iwae --out {{}}/run {{run}} | --resume: this run was trained with --objective elbo
train --resume --epochs 3 --micro-batch 8 --out {{}}/run {{run}} | --resume: this run was trained with --micro-batch 0
train --resume --binarize-seed 3 --out {{}}/run {{run}} | --resume: this run was trained with --binarize-seed unset,
train --binarize-seed 3 --out {{}}/new                      | --binarize-seed seeds --binarize sample's test draw; add
train --resume --epochs 3 --out {{}}/damaged {{run}}        | checkpoint {{}}/damaged/checkpoints/2 is damaged
train --resume --epochs 3 --out {{}}/garbled {{run}} | {{}}/garbled/metrics.jsonl is damaged at line 17 ('{{"step": 1'
evaluate --run {{}}/damaged | checkpoint {{}}/damaged/checkpoints/2 is damaged or does not fit this model (
evaluate --run {{}}/resized                                 | checkpoint {{}}/resized/checkpoints/2 has latent size 2
train --resume --epochs 2 --out {{}}/cleared {{run}} | --resume: {{}}/cleared/metrics.jsonl has no test record of
train --resume --epochs 3 --out {{}}/filed {{run}}          | {{}}/filed/checkpoints is a file, not a folder of
evaluate --run {{}}/filed                                   | {{}}/filed/checkpoints is a file, not a folder of
train --num-processes 2                                     | --coordinator, --num-processes and --process-id go
train --coordinator nohost --num-processes 2 --process-id 0 | --coordinator must be HOST:PORT
train --coordinator 127.0.0.1:65536 --num-processes 2 --process-id 0 | --coordinator must be HOST:PORT
train --coordinator 127.0.0.1:0 --num-processes 2 --process-id 0 | --coordinator must be HOST:PORT
train --coordinator 127.0.0.1:1 --num-processes 2 --process-id 2 | --process-id must be in 0..1
train --coordinator 127.0.0.1:1 --num-processes 0 --process-id 0 | --num-processes must be at least 1
train --coordinator-timeout 0                               | --coordinator-timeout must be a finite positive number
train --coordinator-timeout inf                             | --coordinator-timeout must be a finite positive number
train --seed 1,,2                                           | argument --seed: '1,,2' has an empty item
train --lr 1e-3,                                            | argument --lr: '1e-3,' has an empty item
train --lr 1e-3,fast                                        | argument --lr: '1e-3,fast' is not a list of float
train --lr 1e-3,0                                           | --lr must be a finite positive number
train --seed 1,{2**40}                                      | {SEED_RANGE}
train --reconstruction-weight 1,-1                          | --reconstruction-weight must be a finite number >= 0
train --seed 1,2,1                                          | argument --seed: '1,2,1' gives 1 twice
train --latent-dim 2,4                                      | argument --latent-dim: takes one value, got '2,4'
train --batch-size 32,64                                    | argument --batch-size: takes one value
train --epochs 1,2                                          | argument --epochs: takes one value
train --dataset mnist,fashion_mnist                         | argument --dataset: takes one value
train --seed 1,2 --member-group -1                          | --member-group must be >= 0
train --member-group -1                                     | --member-group must be >= 0
train --seed 1,2 --likelihood bernoulli --binarize sample --out {{}}/new | --binarize sample draws each member's
train --resume --epochs 3 --out {{}}/ensemble {{run}} --seed 123,8 --lr 5e-4,1e-3 | {ENSEMBLE_WAS}, not --seed 123,8
train --resume --epochs 3 --out {{}}/ensemble {{run}}       | {ENSEMBLE_WAS}, not --seed 123 --lr
train --resume --epochs 3 --seed 1,2 --out {{}}/run {{run}} | --resume: {{}}/run holds no ensemble to resume
evaluate --run {{}}/nope                                    | --run {{}}/nope is not a folder
sample --run '' --out {{}}/s.png                            | argument --run: an empty path
evaluate --run {{}}/empty                                   | {{}}/empty has no config.json
evaluate --run {{}}/typo                          | {{}}/typo/config.json is damaged (--latent-dim must be of type int
train --resume --epochs 3 --out {{}}/typo {{run}} | {{}}/typo/config.json is damaged (--latent-dim must be
evaluate --run {{}}/list                          | {{}}/list/config.json is damaged (not a JSON object
evaluate --run {{}}/hollow                        | {{}}/hollow/ensemble.json is damaged (not a JSON object with members
train --resume --epochs 3 --out {{}}/hollow --seed 1,2 | {{}}/hollow/ensemble.json is damaged (not a JSON object with
evaluate --run {{}}/outside                  | {{}}/outside/ensemble.json is damaged (members must be folder names
evaluate --run {{}}/none                     | {{}}/none/ensemble.json is damaged (members must be folder names
train --resume --epochs 3 --out {{}}/flat --seed 1,2 | {{}}/flat/ensemble.json is damaged (members must be folder names
evaluate --run {{}}/unweighted | this run cannot be evaluated: a Gaussian loss with --reconstruction-weight 0
evaluate --run {{}}/uneven                   | the members of {{}}/uneven stopped at different epochs ([1, 2]);
evaluate --run {{}}/run --iw-samples 0                      | --iw-samples must be at least 1
evaluate --run {{}}/run --iw-samples many                   | argument --iw-samples: invalid int value
evaluate --run {{}}/run --test-examples 0                   | --test-examples must be at least 1
evaluate --run {{}}/run --seed -1                           | {SEED_RANGE}
sample --run {{}}/run --seed {2**32} --out {{}}/s.png        | {SEED_RANGE}
sample --run {{}}/run -n 0 --out {{}}/s.png                 | -n must be an integer in 1..1024
sample --run {{}}/run -n 100000000 --out {{}}/s.png         | -n must be an integer in 1..1024
sample --run {{}}/ensemble --out {{}}/s.png                | --run {{}}/ensemble is an ensemble; give one member's
sample --run {{}}/run --out {{}}/s.jpg                      | --out {{}}/s.jpg must name a .png file
sample --run {{}}/run --out {{}}/mine.png                   | {{}}/mine.png already exists
sample --run {{}}/run --out /proc/x.png                     | --out /proc/x.png cannot be written
export --run {{}}/run --to {{}}/mine.pt                     | {{}}/mine.pt already exists
export --run {{}}/run --to {{}}/file/w.pt                   | --to {{}}/file/w.pt: {{}}/file is a file
bench --batch-sizes 8,x                                     | --batch-sizes must be comma-separated integers
bench --batch-sizes 0                                       | --batch-sizes must be positive integers
bench --members 1,,4                                        | --members must be comma-separated integers, got '1,,4'
bench --members 0                                           | --members must be positive integers
bench --members 4,1,4                                       | --members 4,1,4 gives 4 twice; each value once
bench --repeats 0                                           | --repeats and --images must be positive
bench --torch-modes eager,jit                               | --torch-modes takes eager, autocast, compile, each once
bench --torch-modes compile,compile                         | --torch-modes takes eager, autocast, compile, each once
bench --torch-modes compile --torch-compile-backend nonsense | --torch-compile-backend names no torch.compile backend
bench --batch-sizes 32,5000                                 | batch size 5000 is larger than the training images
bench --batch-sizes 300 --train-examples 256                | batch size 300 is larger than the training images (256)
bench --conv-impl cudnn                                     | --conv-impl must be one of
bench --micro-batch -2                                      | --micro-batch must be >= 0
bench --member-group -1                                     | --member-group must be >= 0
parity --batch-size 0                                       | --batch-size must be between 1 and 1000
parity --latent-dim 0                                       | --latent-dim must be an integer in 1..4096
parity --iw-train-samples 0                                 | --iw-train-samples must be at least 1
parity --seed -1                                            | {SEED_RANGE}
parity --torch-weights {{}}/garbage.pt | --torch-weights {{}}/garbage.pt is not a loadable torch state dict
parity --torch-weights {{}}/objects.pt | --torch-weights {{}}/objects.pt is not a loadable torch state dict
parity --torch-weights {{}}/partial.pt | --torch-weights {{}}/partial.pt does not fit the seed's VAE: missing
parity --torch-weights {{}}/nan.pt | --torch-weights {{}}/nan.pt holds non-finite values (decoder.8.bias)
parity --torch-weights {{}}/lists.pt | --torch-weights {{}}/lists.pt does not fit the seed's VAE: While copying the
parity --torch-weights {{}}/ints.pt | --torch-weights {{}}/ints.pt does not fit the seed's VAE: 'decoder.8.bias' holds
"""
ROWS = [[part.strip() for part in line.split(" | ")] for line in TABLE.strip().splitlines()]
TORCH_ROWS = ("parity ", "export ", "bench --torch-modes compile ")  # the rows whose refusal needs torch
NEEDS_TORCH = ["export --run {}/run --to {}/w.pt", "parity --batch-size 2"]


def checksums(folder: Path) -> dict:
    """Every file's hash, but a run's lock (which says who last held it, jaxvae's own bookkeeping)."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK)
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="session")
def place(tmp_path_factory, small_run, ensemble_run):
    """A scratch folder holding: ``run`` and ``ensemble`` (copies of the suite's runs), ``damaged`` (the run with its
    last checkpoint overwritten), ``garbled`` (the run, the line before the last of its metrics.jsonl torn: only the
    last may be), ``typo`` (the run, its config.json's latent size ``true``: a bool is no int), ``resized`` (the run,
    its config.json's latent size 3), ``unlisted`` (the run, its last checkpoint without its record and Orbax's metadata
    file), ``filed`` (the run, its checkpoints folder a file), ``cleared`` (the run, its report never written and its
    metrics.jsonl emptied by hand), ``list`` and ``hollow`` (a config.json that is a JSON list, an ensemble.json without
    its fields), ``outside`` and ``flat`` (an ensemble.json naming a member outside ``members/``, one whose list is a
    number), ``none`` (an ensemble.json of no members), ``unweighted`` (the run's config.json with the Gaussian loss's
    weight 0: its loss is no likelihood), ``uneven`` (an ensemble of two copies of the run, one without its last
    checkpoint), ``empty/``, ``file`` (a regular file), ``mine.png`` and ``mine.pt`` (files a user already has),
    ``garbage.pt``, ``objects.pt``, ``partial.pt``, ``nan.pt``, ``lists.pt`` and ``ints.pt`` (a file that is no torch
    state dict, one that holds a pickled object of another class, one that lacks a key, one with a NaN, one with a list,
    one with an integer tensor)."""
    root = tmp_path_factory.mktemp("refusals")
    shutil.copytree(small_run, root / "run")
    shutil.copytree(ensemble_run, root / "ensemble")
    shutil.copytree(small_run, root / "damaged")
    for f in (root / "damaged" / "checkpoints" / "2" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage")
    shutil.copytree(small_run, root / "garbled")
    lines = (root / "garbled" / "metrics.jsonl").read_text().splitlines(keepends=True)
    (root / "garbled" / "metrics.jsonl").write_text("".join(lines[:-2] + ['{"step": 1\n'] + lines[-1:]))
    shutil.copytree(small_run, root / "unlisted")
    shutil.rmtree(root / "unlisted" / "checkpoints" / "2" / "meta")
    (root / "unlisted" / "checkpoints" / "2" / "_CHECKPOINT_METADATA").unlink()
    shutil.copytree(small_run, root / "cleared")
    (root / "cleared" / "summary.json").unlink()
    (root / "cleared" / "metrics.jsonl").write_text("")
    shutil.copytree(small_run, root / "filed")
    shutil.rmtree(root / "filed" / "checkpoints")
    (root / "filed" / "checkpoints").write_text("not a folder")
    config = json.loads((small_run / "config.json").read_text())
    for name, latent_dim in (("typo", True), ("resized", 3)):
        shutil.copytree(small_run, root / name)
        (root / name / "config.json").write_text(json.dumps({**config, "latent_dim": latent_dim}))
    for name, file, text in (
        ("list", "config.json", "[1, 2]"),
        ("hollow", "ensemble.json", "{}"),
        ("outside", "ensemble.json", '{"members": ["../run"], "lists": {"seed": [1, 2]}}'),
        ("flat", "ensemble.json", '{"members": ["seed1"], "lists": {"seed": 1}}'),
        ("none", "ensemble.json", '{"members": [], "lists": {}}'),
        ("unweighted", "config.json", json.dumps({**config, "reconstruction_weight": 0.0})),
    ):
        (root / name).mkdir()
        (root / name / file).write_text(text)
    for name in ("a", "b"):
        shutil.copytree(small_run, root / "uneven" / "members" / name)
    (root / "uneven" / "ensemble.json").write_text('{"members": ["a", "b"], "lists": {"seed": [1, 2]}}')
    shutil.rmtree(root / "uneven" / "members" / "b" / "checkpoints" / "2")
    if WITH_TORCH:
        import torch  # optional: the parity and export rows need it

        from torch_ref import VAE as TorchVAE

        state = TorchVAE(2).state_dict()
        torch.save({**state, "decoder.8.bias": torch.tensor([float("nan")])}, root / "nan.pt")
        torch.save({**state, "decoder.8.bias": [0.0]}, root / "lists.pt")  # a value that is no tensor
        torch.save({**state, "decoder.8.bias": torch.tensor([1])}, root / "ints.pt")
        del state["decoder.8.bias"]
        torch.save(state, root / "partial.pt")
        torch.save(argparse.Namespace(lr=1), root / "objects.pt")  # another class: torch must refuse to unpickle it
    (root / "garbage.pt").write_bytes(b"not a torch file")
    (root / "empty").mkdir()
    (root / "file").write_text("a regular file")
    (root / "mine.png").write_bytes(b"precious picture")
    (root / "mine.pt").write_bytes(b"precious weights")
    return root


def refused(place, capsys, command: str, message: str) -> None:
    """``jaxvae COMMAND`` in this process: exit status 2 (returned, or from argparse), one line that starts with
    ``message``, and nothing in ``place`` changed."""
    before = checksums(place)
    args = [a.replace("{}", str(place)) for a in shlex.split(command.replace("{run}", " ".join(SMALL_RUN)))]
    try:
        status = main(args)
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2 and err.startswith(f"jaxvae {args[0]}: error: {message.replace('{}', str(place))}"), err
    assert len(err.strip().splitlines()) == 1, err
    assert checksums(place) == before


@pytest.mark.parametrize(
    "command, message",
    [pytest.param(*row, id=row[0], marks=NEEDS_TORCH_HERE if row[0].startswith(TORCH_ROWS) else ()) for row in ROWS],
)
def test_refusal(place, capsys, command, message):
    refused(place, capsys, command, message)


@pytest.mark.parametrize("command", NEEDS_TORCH)
def test_commands_that_need_torch_say_so_where_it_is_missing(place, capsys, monkeypatch, command):
    """torch hidden from the process (as on a machine with ``pip install -e .`` alone)."""
    monkeypatch.setitem(sys.modules, "torch", None)
    refused(place, capsys, command, f"{command.split()[0]} needs torch, which is not installed here")


def test_each_edge_itself_is_accepted():
    """The table refuses one past each edge; the edge passes (a timeout: any positive one)."""
    check_batch_fits(RunConfig(batch_size=256), 256)  # one step per epoch
    assert check_flags("127.0.0.1:65535", 1, 0, 1e-3)  # the edges of the port, the processes and the timeout
    lower = dict(seed=0, binarize_seed=0, latent_dim=1, reconstruction_weight=0.0, devices=0, train_examples=1)
    for name, value in [*lower.items(), ("seed", 2**32 - 1), ("binarize_seed", 2**32 - 1), ("latent_dim", 4096)]:
        check_value(name, value)


def test_a_library_s_words_over_several_lines_are_quoted_on_one(place, capsys, monkeypatch):
    """TFDS's reason for a failed download, quoted in the line, may run over several lines (a stand-in here)."""

    def fail(*args, **kwargs):
        raise RuntimeError("download failed:\n  HTTP 503")

    monkeypatch.setattr(tfds_source, "_read_splits", fail)
    monkeypatch.setattr(tfds_source, "_host_reachable", lambda host: True)
    cause = "tfds: cannot download or read mnist in {}/empty (RuntimeError: download failed: HTTP 503)"
    refused(place, capsys, "bench --dataset mnist --data-dir {}/empty", cause)


@pytest.mark.parametrize(
    "command, message",
    [
        ("train --out {}/new --seed -1", SEED_RANGE),
        ("evaluate --run {}/unlisted", "checkpoint {}/unlisted/checkpoints/2 is damaged (KeyError)"),  # Orbax warns
    ],
)
def test_a_refusal_is_the_whole_of_stderr(place, command, message):
    """In a process of its own: exit status 2, one line on stderr (no traceback, nor a library's log line, which
    pytest would capture in this process), nothing written."""
    before = checksums(place), sorted(place.rglob("*"))
    args = [a.replace("{}", str(place)) for a in shlex.split(command)]
    result = subprocess.run([sys.executable, "-m", "jaxvae", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"jaxvae {args[0]}: error: {message.replace('{}', str(place))}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (checksums(place), sorted(place.rglob("*"))) == before
