"""``jaxvae`` end to end on a small slice of the embedded data: outputs, resume, commands, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxvae.cli import main
from jaxvae.run import checkpoint
from jaxvae.run import files as run_files
from jaxvae.run.config import RunConfig
from jaxvae.run.trainer import RunSetup, Trainer
from jaxvae.run.training import train

TIMING_FIELDS = ("images_per_second", "compile_seconds", "train_seconds", "eval_seconds")
SMALL = ["--train-examples", "256", "--test-examples", "100", "--batch-size", "32", "--chunk-steps", "4"]


def run_cli(*args):
    """Run ``jaxvae`` in a subprocess (to see exit status, stderr and the absence of a traceback)."""
    return subprocess.run(
        [sys.executable, "-m", "jaxvae.cli", *map(str, args)], capture_output=True, text=True, timeout=600
    )


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(small_run):
    """The suite's 2-epoch run (``tests/conftest.py``), trained with ``SMALL``; read but never changed here."""
    config = json.loads((small_run / "config.json").read_text())
    assert (config["train_examples"], config["test_examples"], config["batch_size"], config["chunk_steps"]) == (
        256,
        100,
        32,
        4,
    )
    return small_run


def test_run_writes_everything(trained):
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["epochs_completed"] == 2 and summary["steps"] == 16
    assert summary["data"] == {"source": summary["data"]["source"], "train_images": 256, "test_images": 100}
    assert summary["traces"] == {"train_chunk": 1, "evaluate": 1}  # compiled once for the whole run
    assert all(isinstance(summary[k], float) for k in TIMING_FIELDS)  # present and numeric; values are not tested
    assert {"jax", "flax", "optax"} <= summary["versions"].keys()
    assert np.isfinite(summary["final_test"]["loss"]) and summary["final_train"]["loss"] > 0
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "split" not in r]
    assert [r["step"] for r in steps] == list(range(1, 17))
    assert [r["epoch"] for r in steps] == [1] * 8 + [2] * 8
    assert set(steps[0]) == {"step", "epoch", "loss", "reconstruction", "kl"}
    assert [r["epoch"] for r in records if r.get("split") == "test"] == [1, 2]
    for name in (
        "training_loss",
        "reconstructions",
        "latent_interpolations",
        "latent_space",
        "prior_samples",
        "latent_manifold",
    ):
        png = trained / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert checkpoint.latest_epoch(trained / "checkpoints") == 2


def test_resume_equals_uninterrupted(trained, tmp_path):
    out = tmp_path / "resumed"
    assert main(["train", "--epochs", "1", "--out", str(out), *SMALL]) == 0
    assert main(["train", "--epochs", "2", "--out", str(out), "--resume", *SMALL]) == 0
    assert (out / "metrics.jsonl").read_text() == (trained / "metrics.jsonl").read_text()  # bit for bit
    like = checkpoint.restore(trained / "checkpoints", 2, _fresh_state())
    got = checkpoint.restore(out / "checkpoints", 2, _fresh_state())
    for a, b in zip(
        np.concatenate([np.ravel(x) for x in _leaves(like)]), np.concatenate([np.ravel(x) for x in _leaves(got)])
    ):
        assert a == b


def test_eval_every(tmp_path):
    """Test records after every 2nd epoch and after the last; the final test metrics are the last epoch's."""
    out = tmp_path / "sparse_eval"
    assert (
        main(["train", "--epochs", "3", "--eval-every", "2", "--out", str(out), "--train-examples", "64", *SMALL[2:]])
        == 0
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tests = [r for r in records if r.get("split") == "test"]
    assert [r["epoch"] for r in tests] == [2, 3]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_test"] == {k: tests[-1][k] for k in ("loss", "reconstruction", "kl")}


def _fresh_state():
    return RunSetup.build(RunConfig()).state_target()


def _leaves(state):
    import jax

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(state.params)]


def test_evaluate_sample_export(trained, tmp_path):
    import torch

    from torch_ref import VAE as TorchVAE

    result = run_cli("evaluate", "--run", trained, "--iw-samples", "20")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)  # the IWAE fields are tested in tests/test_evaluate.py
    assert metrics["epoch"] == 2 and metrics["test_images"] == 100 and metrics["loss"] > 0
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if r.get("split") == "test" and r["epoch"] == 2][0]
    # the same function of the same checkpoint, images and noise key; 1e-6: only XLA's compilation may differ
    np.testing.assert_allclose(
        [metrics[k] for k in ("loss", "reconstruction", "kl")],
        [logged[k] for k in ("loss", "reconstruction", "kl")],
        rtol=1e-6,
    )
    png = tmp_path / "samples.png"
    assert main(["sample", "--run", str(trained), "-n", "16", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    pt = tmp_path / "weights.pt"
    assert main(["export", "--run", str(trained), "--to", str(pt)]) == 0
    model = TorchVAE(2)
    model.load_state_dict(torch.load(pt, weights_only=True), strict=True)


# In a process of their own: the whole of stderr is one line and no traceback (tests/test_refusals.py has the
# table of every refusal, in this process).
BAD_FLAGS = [
    (["--batch-size", "5000"], "larger than the training split"),  # found once the data is loaded
    (["--dataset", "idx:/nonexistent"], "is not a directory"),
    (["--epochs", "two"], "invalid int value"),
    (["--seed", str(2**64)], "--seed must be an integer in 0..4294967295"),
]


@pytest.mark.parametrize("flags, message", BAD_FLAGS)
def test_bad_flags_are_one_line(tmp_path, flags, message):
    out = tmp_path / "out"
    result = run_cli("train", "--out", out, *flags)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def _unfinished_copy(trained, folder):
    """A run folder as a first epoch that never finished leaves it: its settings and some step records."""
    folder.mkdir()
    (folder / "config.json").write_bytes((trained / "config.json").read_bytes())
    lines = (trained / "metrics.jsonl").read_text().splitlines(keepends=True)
    (folder / "metrics.jsonl").write_text("".join(lines[:3]) + lines[3][:20])  # the last line torn by a kill
    return folder


@pytest.mark.parametrize("resume", [False, True], ids=["same command", "resume"])
def test_a_first_epoch_that_never_finished_is_started_afresh(trained, tmp_path, resume):
    out = _unfinished_copy(trained, tmp_path / "unfinished")
    flags = ["--resume"] if resume else []
    assert main(["train", "--epochs", "2", "--out", str(out), *SMALL, *flags]) == 0
    assert (out / "metrics.jsonl").read_text() == (trained / "metrics.jsonl").read_text()


def test_refuses_to_overwrite_another_run(trained):
    before = snapshot(trained)
    result = run_cli("train", "--out", trained, "--epochs", "1")
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert snapshot(trained) == before


@pytest.mark.parametrize("primary", [True, False], ids=["process 0", "process 1"])
def test_out_is_read_by_every_process_before_process_0_probes_it(tmp_path, monkeypatch, primary):
    """Over several processes a probe file or a folder made by process 0 while another reads ``--out`` would look
    like another run there; so every process reads, then a barrier, then process 0 alone probes, then a barrier."""
    from jaxvae.run import training

    events = []
    monkeypatch.setattr(training, "is_primary", lambda: primary)
    monkeypatch.setattr(training, "barrier", lambda name: events.append("barrier"))
    real_probe = run_files.check_writable
    monkeypatch.setattr(run_files, "check_writable", lambda *a, **k: (events.append("probe"), real_probe(*a, **k)))
    out = tmp_path / "new"
    training.check_out_dir(out, resume=False)
    assert events == (["barrier", "probe", "barrier"] if primary else ["barrier", "barrier"])
    assert not out.exists()  # the probe leaves nothing behind


def test_resume_errors(trained, tmp_path):
    before = snapshot(trained)
    result = run_cli("train", "--out", trained, "--resume", "--latent-dim", "16", *SMALL)
    assert result.returncode == 2 and "--latent-dim 2" in result.stderr
    result = run_cli("train", "--out", tmp_path / "empty", "--resume")
    assert result.returncode == 2 and "no run to resume" in result.stderr
    assert snapshot(trained) == before


def test_resume_with_damaged_checkpoint(trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    for f in (copy / "checkpoints" / "2" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage")
    before = snapshot(copy)
    result = run_cli("train", "--out", copy, "--resume", "--epochs", "3", *SMALL)
    assert result.returncode == 2 and "damaged" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert snapshot(copy) == before


def test_export_refuses_to_overwrite(trained, tmp_path):
    existing = tmp_path / "mine.pt"
    existing.write_bytes(b"precious")
    result = run_cli("export", "--run", trained, "--to", existing)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert existing.read_bytes() == b"precious"


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    """Epoch 2 turns NaN: the run stops there with a clear error; epoch 1's checkpoint stays."""
    real = Trainer.run_chunk

    def poisoned(self, state, epoch, first, key):
        state, metrics = real(self, state, epoch, first, key)
        return (state, metrics * np.nan) if int(state.step) > 8 else (state, metrics)

    monkeypatch.setattr(Trainer, "run_chunk", poisoned)
    out = tmp_path / "nan"
    config = RunConfig(epochs=3, batch_size=32, train_examples=256, test_examples=100, chunk_steps=4)
    with pytest.raises(Exception, match="non-finite at step 9 .epoch 2.*last good checkpoint"):
        train(config, out)
    assert checkpoint.latest_epoch(out / "checkpoints") == 1
    lines = run_files.MetricsLog(out / "metrics.jsonl").read()
    assert lines[-1]["step"] == 9 and lines[-1]["loss"] is None


def test_non_finite_loss_in_the_first_epoch_names_no_checkpoint(tmp_path, monkeypatch):
    """Epoch 1 turns NaN: the message says there is no checkpoint (and names no folder that does not exist);
    the folder is an unfinished run, which the same command starts afresh."""
    real = Trainer.run_chunk

    def poisoned(self, state, epoch, first, key):
        state, metrics = real(self, state, epoch, first, key)
        return state, metrics * np.nan

    monkeypatch.setattr(Trainer, "run_chunk", poisoned)
    out = tmp_path / "nan"
    config = RunConfig(epochs=1, batch_size=32, train_examples=64, test_examples=100, chunk_steps=2)
    with pytest.raises(Exception, match="non-finite at step 1 .epoch 1.*no checkpoint; the same command starts"):
        train(config, out)
    assert not (out / "checkpoints").exists() or checkpoint.latest_epoch(out / "checkpoints") is None
    from jaxvae.run.training import unfinished_run

    assert unfinished_run(out)


def test_commands_that_need_torch_say_so_where_it_is_missing(trained, tmp_path):
    """torch hidden from the process (as on a machine with ``pip install -e .`` alone): one line, exit 2."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    for args in (["export", "--run", trained, "--to", tmp_path / "w.pt"], ["parity", "--batch-size", "2"]):
        result = subprocess.run(
            [sys.executable, "-m", "jaxvae.cli", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
        )
        assert result.returncode == 2 and "needs torch, which is not installed" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "w.pt").exists()
